//! Frames the router originates — ARP requests, packets that waited for a neighbour, SVR
//! control messages — leave through one send-only `AF_PACKET` socket per port. The packet
//! drivers can only answer a received frame; these frames have none to answer. Sending on a
//! device does not pass its XDP program (that is on receive), so this works beside AF_XDP.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::io::sys;

/// One send-only raw socket per port, in port order.
#[derive(Debug)]
pub struct RawSenders {
    ports: Vec<(OwnedFd, i32)>,
}

impl RawSenders {
    /// Opens a socket for each device, in the calling thread's network namespace.
    pub fn open(devices: &[String]) -> io::Result<Self> {
        let mut ports = Vec::with_capacity(devices.len());
        for device in devices {
            let index = sys::if_index(device)
                .map_err(|e| io::Error::new(e.kind(), format!("interface {device}: {e}")))?;
            // Protocol 0: this socket receives nothing.
            // SAFETY: plain socket(2).
            let fd =
                unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
            if fd < 0 {
                let error = io::Error::last_os_error();
                return Err(io::Error::new(
                    error.kind(),
                    format!("raw socket for {device}: {error}; needs CAP_NET_RAW"),
                ));
            }
            // SAFETY: `fd` was just returned by socket(2) and is owned by nothing else.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            let index = i32::try_from(index).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, "interface index too large")
            })?;
            ports.push((owned, index));
        }
        Ok(Self { ports })
    }

    /// Sends one complete Ethernet frame on port `port`.
    pub fn send(&self, port: usize, frame: &[u8]) -> io::Result<()> {
        let Some((fd, index)) = self.ports.get(port) else {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such port"));
        };
        // SAFETY: sockaddr_ll is plain data, valid when zeroed.
        let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        address.sll_family = libc::AF_PACKET as u16;
        address.sll_ifindex = *index;
        address.sll_halen = 6;
        if let Some(dst) = frame.get(..6) {
            address.sll_addr[..6].copy_from_slice(dst);
        }
        // SAFETY: `frame` is valid for its length; `address` is a valid sockaddr_ll.
        let sent = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&address as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}
