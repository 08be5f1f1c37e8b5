//! The in-kernel fast path: loads `cnf/bpf/fastpath.c` (built by `cnf/build.rs`, embedded here)
//! with libbpf, attaches it in native (driver) mode to every router interface before the
//! AF_XDP sockets are created, and gives the runtime the program's maps: `sessions` (what the
//! kernel may forward, and its counters), `devices` (egress ports) and `stats` (per-CPU
//! forwarded and punt counters).
//!
//! One copy of the program is loaded per interface, because each interface needs its own
//! `xsks_map` (queue id → that interface's AF_XDP socket); the copies share `sessions`,
//! `devices` and `stats` (libbpf `bpf_map__reuse_fd`). The `afxdp` crate creates its sockets
//! with `libbpf_flags` 0, so libbpf's `xsk_socket__create` finds the program already attached,
//! looks among its maps for one named `xsks_map` and inserts the socket there at its queue id
//! (libbpf 0.3 `xsk.c`: `__xsk_setup_xdp_prog` → `xsk_lookup_bpf_maps` →
//! `xsk_set_bpf_maps`); on close it deletes that entry and leaves the program attached, which
//! [`FastPath`]'s drop then detaches.
//!
//! A program left attached by a router that crashed is replaced (with a log line) when the fast
//! path starts, and detached when the router starts without it (see [`clear_stale`]): its
//! `sessions` map would otherwise go on forwarding sessions nobody owns.
//!
//! Deployment requirement: `XDP_REDIRECT` into a device needs that device to accept XDP frames
//! (`ndo_xdp_xmit`): physical NICs with native XDP do; a veth does only when its *peer* has NAPI
//! enabled (GRO on, or an XDP program attached to the peer), otherwise the kernel drops the
//! redirected frames (counted in the veth's `xdp_xmit_errors`/`tx_drops`, not here).

use std::ffi::{CStr, CString};
use std::fmt;
use std::io;
use std::os::raw::{c_char, c_int, c_void};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use super::sys;
use crate::packet::MacAddress;
use crate::pipeline::offload::Rewrite;
use crate::session::FlowKey;

/// The eBPF object `cnf/build.rs` compiled from `cnf/bpf/fastpath.c`.
pub static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/fastpath.o"));

/// The program's name as the kernel keeps it (`BPF_OBJ_NAME_LEN` is 16 with the NUL).
const PROGRAM: &str = "signpost_fastpath";
const KERNEL_NAME: &str = "signpost_fastpa";

/// `struct flow_key` of the program: a session direction as it arrives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct OffloadKey {
    pub ifindex: u32,
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub src_port: [u8; 2],
    pub dst_port: [u8; 2],
    pub protocol: u8,
    pub pad: [u8; 3],
}

/// `struct flow_entry` of the program: the rewrite, and the counters the program keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct OffloadEntry {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub src_port: [u8; 2],
    pub dst_port: [u8; 2],
    /// Egress VLAN id, 0 for untagged.
    pub vlan: u16,
    /// Larger IP packets are punted.
    pub max_len: u16,
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    /// The ingress port's address: frames for another one are punted.
    pub in_mac: [u8; 6],
    /// DSCP to mark, or [`NO_DSCP`].
    pub dscp: u8,
    pub pad: u8,
    /// Key of the egress device in `devices` (the runtime's port index).
    pub egress_port: u32,
    pub owner: u64,
    pub packets: u64,
    pub bytes: u64,
    /// `CLOCK_MONOTONIC_COARSE` nanoseconds of the last packet forwarded (tick resolution).
    pub last_seen_ns: u64,
}

const _: () = assert!(size_of::<OffloadKey>() == 20);
const _: () = assert!(size_of::<OffloadEntry>() == 72);

impl OffloadKey {
    /// A session direction as it arrives on interface `ifindex`; `None` for a non-IPv4 key.
    pub fn new(ifindex: u32, key: &FlowKey) -> Option<OffloadKey> {
        let (src, dst) = key.v4_addrs()?;
        Some(OffloadKey {
            ifindex,
            src,
            dst,
            src_port: key.src_port().to_be_bytes(),
            dst_port: key.dst_port().to_be_bytes(),
            protocol: key.protocol(),
            pad: [0; 3],
        })
    }
}

/// The link-layer side of a rewrite, which the runtime knows and the pipeline does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    /// The ingress port's address.
    pub in_mac: MacAddress,
    /// The egress port (its key in `devices`) and its address.
    pub egress_port: u32,
    pub src_mac: MacAddress,
    /// The next hop's address.
    pub dst_mac: MacAddress,
}

impl OffloadEntry {
    /// The entry for `rewrite` over `link`, counters zero; `None` for a non-IPv4 target.
    pub fn new(rewrite: &Rewrite, link: &Link, owner: u64) -> Option<OffloadEntry> {
        let (src, dst) = rewrite.target.v4_addrs()?;
        Some(OffloadEntry {
            src,
            dst,
            src_port: rewrite.target.src_port().to_be_bytes(),
            dst_port: rewrite.target.dst_port().to_be_bytes(),
            vlan: rewrite.egress.vlan.unwrap_or(0) & 0x0fff,
            max_len: rewrite.max_len,
            dst_mac: link.dst_mac.0,
            src_mac: link.src_mac.0,
            in_mac: link.in_mac.0,
            dscp: rewrite.dscp.map_or(NO_DSCP, |d| d & 0x3f),
            pad: 0,
            egress_port: link.egress_port,
            owner,
            packets: 0,
            bytes: 0,
            last_seen_ns: 0,
        })
    }

    /// The entry without its counters, to compare what is installed with what should be.
    pub fn rewrite_part(&self) -> OffloadEntry {
        OffloadEntry {
            packets: 0,
            bytes: 0,
            last_seen_ns: 0,
            ..*self
        }
    }
}

/// `OffloadEntry::dscp` for "leave the DS field alone".
pub const NO_DSCP: u8 = 0xff;

/// Entries the `sessions` map holds (both directions of a session take one each).
pub const CAPACITY: usize = 131_072;

macro_rules! stats {
    ($($variant:ident => $name:literal: $help:literal,)*) => {
        /// The program's counters, in the order of `enum stat` in `fastpath.c`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u32)]
        pub enum Stat { $($variant,)* }

        impl Stat {
            pub const ALL: &'static [Stat] = &[$(Stat::$variant,)*];

            /// The metric name.
            pub fn name(self) -> &'static str {
                match self { $(Stat::$variant => $name,)* }
            }

            pub fn help(self) -> &'static str {
                match self { $(Stat::$variant => $help,)* }
            }
        }
    };
}

stats! {
    ForwardedPackets => "forwarded-packets": "packets the kernel fast path forwarded",
    ForwardedBytes => "forwarded-bytes": "IP bytes the kernel fast path forwarded",
    NotIpv4 => "punt-not-ipv4": "frames punted to user space: not IPv4 (ARP, IPv6, other)",
    Malformed => "punt-malformed": "frames punted: truncated or inconsistent lengths",
    IpOptions => "punt-ip-options": "frames punted: IPv4 with options",
    Fragment => "punt-fragment": "frames punted: IP fragments",
    Protocol => "punt-protocol": "frames punted: neither TCP nor UDP",
    NoSession => "punt-no-session": "frames punted: no offloaded session (first packets, control traffic)",
    NotForUs => "punt-not-for-us": "frames punted: for another link-layer address",
    TcpFlags => "punt-tcp-flags": "frames punted: TCP SYN, FIN or RST (session state changes)",
    SvrCookie => "punt-svr-cookie": "frames punted: payload starts with the SVR cookie",
    Ttl => "punt-ttl": "frames punted: TTL 1 or 0",
    TooBig => "punt-too-big": "frames punted: larger than the egress MTU",
    NoRoom => "punt-no-room": "frames punted: no head- or tailroom for the egress header",
}

/// Why the fast path could not start; the text says what to change.
#[derive(Debug)]
pub struct FastPathError(pub String);

impl fmt::Display for FastPathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "XDP fast path: {}", self.0)
    }
}

impl std::error::Error for FastPathError {}

fn fail(what: impl Into<String>) -> FastPathError {
    FastPathError(what.into())
}

fn errno(rc: c_int) -> io::Error {
    io::Error::from_raw_os_error(rc.abs())
}

/// What libbpf printed while loading (the verifier's log among it), for the error.
static LIBBPF_LOG: Mutex<String> = Mutex::new(String::new());

unsafe extern "C" {
    fn vsnprintf(
        buf: *mut c_char,
        size: usize,
        format: *const c_char,
        args: *mut libbpf_sys::__va_list_tag,
    ) -> c_int;
}

unsafe extern "C" fn collect_log(
    _level: libbpf_sys::libbpf_print_level,
    format: *const c_char,
    args: *mut libbpf_sys::__va_list_tag,
) -> c_int {
    let mut buf = [0 as c_char; 1024];
    // SAFETY: libbpf hands a valid format and argument list; vsnprintf writes at most
    // `buf.len()` bytes including the NUL.
    let n = unsafe { vsnprintf(buf.as_mut_ptr(), buf.len(), format, args) };
    if n > 0
        && let Ok(mut log) = LIBBPF_LOG.lock()
    {
        // SAFETY: vsnprintf NUL-terminated `buf`.
        let line = unsafe { CStr::from_ptr(buf.as_ptr()) };
        if log.len() < 64 << 10 {
            log.push_str(&line.to_string_lossy());
        }
    }
    n
}

/// One loaded copy of the program (an eBPF object), not attached.
struct Copy {
    object: *mut libbpf_sys::bpf_object,
    program_fd: c_int,
}

// SAFETY: the object is only used through libbpf calls that take their own locks (map and
// program fds); it is closed once, in drop.
unsafe impl Send for Copy {}
unsafe impl Sync for Copy {}

impl Copy {
    /// Opens and loads the embedded object; `shared` are the `sessions`, `devices` and `stats`
    /// fds of a first copy, to be reused instead of created.
    fn load(shared: Option<[c_int; 3]>) -> Result<Copy, FastPathError> {
        static LOAD: Mutex<()> = Mutex::new(());
        let _serial = LOAD
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        sys::raise_memlock_limit();
        let name = CString::new("signpost_fastpath").map_err(|e| fail(e.to_string()))?;
        let opts = libbpf_sys::bpf_object_open_opts {
            sz: size_of::<libbpf_sys::bpf_object_open_opts>() as _,
            object_name: name.as_ptr(),
            ..Default::default()
        };
        // SAFETY: OBJECT is a static byte slice; libbpf copies what it keeps.
        let object = unsafe {
            libbpf_sys::bpf_object__open_mem(OBJECT.as_ptr().cast(), OBJECT.len() as _, &opts)
        };
        // SAFETY: libbpf_get_error reads the pointer value only.
        let rc = unsafe { libbpf_sys::libbpf_get_error(object.cast()) };
        if object.is_null() || rc != 0 {
            return Err(fail(format!(
                "cannot open the embedded eBPF object: {}",
                errno(rc as c_int)
            )));
        }
        let mut copy = Copy {
            object,
            program_fd: -1,
        };
        if let Some(fds) = shared {
            for (map, fd) in ["sessions", "devices", "stats"].into_iter().zip(fds) {
                let m = copy.map(map)?;
                // SAFETY: `m` belongs to the open object; `fd` is a live map fd of a loaded copy.
                let rc = unsafe { libbpf_sys::bpf_map__reuse_fd(m, fd) };
                if rc != 0 {
                    return Err(fail(format!("cannot share map `{map}`: {}", errno(rc))));
                }
            }
        }
        if let Ok(mut log) = LIBBPF_LOG.lock() {
            log.clear();
        }
        // SAFETY: installs a plain function; libbpf calls it from this thread during load.
        let previous = unsafe { libbpf_sys::libbpf_set_print(Some(collect_log)) };
        let mut attr = libbpf_sys::bpf_object_load_attr {
            obj: object,
            log_level: 0,
            target_btf_path: std::ptr::null(),
        };
        // SAFETY: `attr.obj` is the open object.
        let rc = unsafe { libbpf_sys::bpf_object__load_xattr(&mut attr) };
        // SAFETY: restores the print function that was installed before.
        unsafe { libbpf_sys::libbpf_set_print(previous) };
        if rc != 0 {
            let log = LIBBPF_LOG.lock().map(|l| l.clone()).unwrap_or_default();
            return Err(fail(format!(
                "the kernel refused the program: {} (needs root or CAP_BPF + CAP_NET_ADMIN, and \
                 Linux 5.x with BTF); libbpf and verifier log:\n{log}",
                errno(rc)
            )));
        }
        let pname = CString::new(PROGRAM).map_err(|e| fail(e.to_string()))?;
        // SAFETY: the object is loaded; the name is a valid C string.
        let program =
            unsafe { libbpf_sys::bpf_object__find_program_by_name(object, pname.as_ptr()) };
        if program.is_null() {
            return Err(fail(format!("the object has no program `{PROGRAM}`")));
        }
        // SAFETY: `program` belongs to the loaded object.
        copy.program_fd = unsafe { libbpf_sys::bpf_program__fd(program) };
        if copy.program_fd < 0 {
            return Err(fail("the program has no file descriptor after loading"));
        }
        Ok(copy)
    }

    fn map(&self, name: &str) -> Result<*mut libbpf_sys::bpf_map, FastPathError> {
        let c = CString::new(name).map_err(|e| fail(e.to_string()))?;
        // SAFETY: the object is open; the name is a valid C string.
        let m = unsafe { libbpf_sys::bpf_object__find_map_by_name(self.object, c.as_ptr()) };
        if m.is_null() {
            return Err(fail(format!("the object has no map `{name}`")));
        }
        Ok(m)
    }

    fn map_fd(&self, name: &str) -> Result<c_int, FastPathError> {
        let m = self.map(name)?;
        // SAFETY: `m` belongs to the loaded object.
        let fd = unsafe { libbpf_sys::bpf_map__fd(m) };
        if fd < 0 {
            return Err(fail(format!("map `{name}` has no file descriptor")));
        }
        Ok(fd)
    }
}

impl Drop for Copy {
    fn drop(&mut self) {
        // SAFETY: the object was opened by `load` and is closed once.
        unsafe { libbpf_sys::bpf_object__close(self.object) };
    }
}

/// The fast path: the program loaded (once per interface when attached) and its shared maps.
pub struct FastPath {
    copies: Vec<Copy>,
    /// Interface indexes this fast path attached to, with the id of the program it attached
    /// there (0 when the kernel would not say); detached on drop if still that program.
    attached: Vec<(u32, u32)>,
    sessions: c_int,
    devices: c_int,
    stats: c_int,
    cpus: usize,
    /// Per port: packets and bytes the kernel forwarded in (rx) and out (tx), as the runtime
    /// synced them from the session entries.
    pub port_counters: Vec<[AtomicU64; 4]>,
}

impl fmt::Debug for FastPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FastPath")
            .field("attached", &self.attached)
            .finish_non_exhaustive()
    }
}

impl FastPath {
    /// Loads one copy, attached nowhere: for `BPF_PROG_TEST_RUN` ([`FastPath::test_run`]).
    pub fn load_detached() -> Result<FastPath, FastPathError> {
        let copy = Copy::load(None)?;
        Self::from_first(copy, 0)
    }

    fn from_first(copy: Copy, ports: usize) -> Result<FastPath, FastPathError> {
        // SAFETY: no preconditions.
        let cpus = unsafe { libbpf_sys::libbpf_num_possible_cpus() };
        let cpus = usize::try_from(cpus)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| fail("cannot count the possible CPUs"))?;
        Ok(FastPath {
            sessions: copy.map_fd("sessions")?,
            devices: copy.map_fd("devices")?,
            stats: copy.map_fd("stats")?,
            copies: vec![copy],
            attached: Vec::new(),
            cpus,
            port_counters: (0..ports).map(|_| Default::default()).collect(),
        })
    }

    /// Loads the program and attaches it in native (driver) mode to each of `interfaces` (in the
    /// calling thread's network namespace), whose position is the port index the runtime uses
    /// as `egress_port`. A program already attached is replaced, with a log line. On failure
    /// nothing stays attached.
    pub fn attach(interfaces: &[String]) -> Result<FastPath, FastPathError> {
        let mut fast = Self::from_first(Copy::load(None)?, interfaces.len())?;
        let shared = [fast.sessions, fast.devices, fast.stats];
        for (port, name) in interfaces.iter().enumerate() {
            let index = sys::if_index(name).map_err(|e| {
                fail(format!(
                    "no interface {name} in this network namespace ({e})"
                ))
            })?;
            if port > 0 {
                fast.copies.push(Copy::load(Some(shared))?);
            }
            let copy = fast
                .copies
                .last()
                .ok_or_else(|| fail("no program loaded"))?;
            let key = u32::try_from(port).map_err(|_| fail("too many interfaces"))?;
            if let Err(e) = update(fast.devices, &key, &index) {
                return Err(fail(format!(
                    "cannot add {name} to the egress devices: {e}"
                )));
            }
            let info = link_info(index)
                .map_err(|e| fail(format!("cannot query the XDP program on {name}: {e}")))?;
            if info.prog_id != 0 {
                let program = program_name(info.prog_id).unwrap_or_default();
                // Ours, or libbpf's default AF_XDP program (it loads it unnamed), which a
                // router without the fast path attaches and a crash leaves behind.
                if program != KERNEL_NAME && !program.is_empty() {
                    return Err(fail(format!(
                        "another XDP program is attached to {name} (id {}, \"{program}\"): the \
                         fast path replaces only its own; detach it (`ip link set dev {name} \
                         xdp off`) or run without --fast-path",
                        info.prog_id
                    )));
                }
                tracing::warn!(
                    interface = %name,
                    program_id = info.prog_id,
                    program = %program,
                    "replacing the AF_XDP program a router that stopped uncleanly left"
                );
                if info.skb_prog_id != 0 {
                    detach(index, libbpf_sys::XDP_FLAGS_SKB_MODE);
                }
            }
            let c_index = c_int::try_from(index).map_err(|_| fail("interface index too large"))?;
            // SAFETY: netlink request with a loaded program's fd.
            let rc = unsafe {
                libbpf_sys::bpf_set_link_xdp_fd(
                    c_index,
                    copy.program_fd,
                    libbpf_sys::XDP_FLAGS_DRV_MODE,
                )
            };
            if rc < 0 {
                return Err(fail(format!(
                    "cannot attach to {name} in native mode: {}; the driver needs native XDP \
                     (veth, or a NIC driver with XDP support)",
                    errno(rc)
                )));
            }
            let id = link_info(index).map(|i| i.drv_prog_id).unwrap_or(0);
            fast.attached.push((index, id));
        }
        Ok(fast)
    }

    /// The interface index of `port` (its position in the attached interface list).
    pub fn ifindex(&self, port: usize) -> Option<u32> {
        self.attached.get(port).map(|&(index, _)| index)
    }

    /// Installs (or replaces) the entry for `key`.
    pub fn insert(&self, key: &OffloadKey, entry: &OffloadEntry) -> io::Result<()> {
        update(self.sessions, key, entry)
    }

    /// Removes the entry for `key` (absent is fine).
    pub fn remove(&self, key: &OffloadKey) -> io::Result<()> {
        // SAFETY: `key` points at a value of the map's key size.
        let rc = unsafe {
            libbpf_sys::bpf_map_delete_elem(self.sessions, (key as *const OffloadKey).cast())
        };
        match rc {
            0 => Ok(()),
            rc if rc.abs() == libc::ENOENT => Ok(()),
            // libbpf 0.3 returns -1 and sets errno.
            _ => match io::Error::last_os_error() {
                e if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
                e => Err(e),
            },
        }
    }

    /// The entry for `key`, with the program's counters.
    pub fn entry(&self, key: &OffloadKey) -> io::Result<Option<OffloadEntry>> {
        let mut value = OffloadEntry::default();
        // SAFETY: key and value point at values of the map's key and value sizes.
        let rc = unsafe {
            libbpf_sys::bpf_map_lookup_elem(
                self.sessions,
                (key as *const OffloadKey).cast(),
                (&mut value as *mut OffloadEntry).cast(),
            )
        };
        if rc == 0 {
            return Ok(Some(value));
        }
        match io::Error::last_os_error() {
            e if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            e => Err(e),
        }
    }

    /// Sets `devices[port]` (egress port → interface index); [`FastPath::attach`] does it for
    /// the interfaces it attaches to.
    pub fn set_device(&self, port: u32, ifindex: u32) -> io::Result<()> {
        update(self.devices, &port, &ifindex)
    }

    /// The program's counters, summed over CPUs, in [`Stat::ALL`] order.
    pub fn stats(&self) -> Vec<u64> {
        let mut out = vec![0u64; Stat::ALL.len()];
        let mut per_cpu = vec![0u64; self.cpus];
        for (i, total) in out.iter_mut().enumerate() {
            let key = i as u32;
            // SAFETY: a per-CPU array value is one u64 per possible CPU.
            let rc = unsafe {
                libbpf_sys::bpf_map_lookup_elem(
                    self.stats,
                    (&key as *const u32).cast(),
                    per_cpu.as_mut_ptr().cast(),
                )
            };
            if rc == 0 {
                *total = per_cpu.iter().sum();
            }
        }
        out
    }

    /// Runs the program once on `frame` with `BPF_PROG_TEST_RUN` as if received on
    /// `ingress_ifindex` queue 0: its return code and the frame as it left the program.
    pub fn test_run(&self, frame: &[u8], ingress_ifindex: u32) -> io::Result<(u32, Vec<u8>)> {
        let copy = self
            .copies
            .first()
            .ok_or_else(|| io::Error::other("not loaded"))?;
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index,
        // egress_ifindex.
        let ctx: [u32; 6] = [0, frame.len() as u32, 0, ingress_ifindex, 0, 0];
        let mut out = vec![0u8; frame.len() + 256];
        let mut opts = libbpf_sys::bpf_test_run_opts {
            sz: size_of::<libbpf_sys::bpf_test_run_opts>() as _,
            data_in: frame.as_ptr().cast::<c_void>(),
            data_out: out.as_mut_ptr().cast::<c_void>(),
            data_size_in: frame.len() as u32,
            data_size_out: out.len() as u32,
            ctx_in: ctx.as_ptr().cast::<c_void>(),
            ctx_size_in: size_of_val(&ctx) as u32,
            repeat: 1,
            ..Default::default()
        };
        // SAFETY: every pointer in `opts` is valid for its stated size.
        let rc = unsafe { libbpf_sys::bpf_prog_test_run_opts(copy.program_fd, &mut opts) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        out.truncate(opts.data_size_out as usize);
        Ok((opts.retval, out))
    }
}

impl Drop for FastPath {
    fn drop(&mut self) {
        for &(index, id) in &self.attached {
            // Only our program: one attached since by somebody else stays.
            match link_info(index) {
                Ok(info) if info.drv_prog_id != id && id != 0 => tracing::warn!(
                    interface_index = index,
                    program_id = info.drv_prog_id,
                    "the fast path was replaced by another XDP program; leaving that one attached"
                ),
                _ => detach(index, libbpf_sys::XDP_FLAGS_DRV_MODE),
            }
        }
    }
}

fn update<K, V>(fd: c_int, key: &K, value: &V) -> io::Result<()> {
    // SAFETY: key and value point at live values; the kernel checks their sizes against the
    // map's (the callers pass the map's types).
    let rc = unsafe {
        libbpf_sys::bpf_map_update_elem(fd, (key as *const K).cast(), (value as *const V).cast(), 0)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn link_info(index: u32) -> io::Result<libbpf_sys::xdp_link_info> {
    let mut info = libbpf_sys::xdp_link_info {
        prog_id: 0,
        drv_prog_id: 0,
        hw_prog_id: 0,
        skb_prog_id: 0,
        attach_mode: 0,
    };
    let c_index = c_int::try_from(index)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface index too large"))?;
    // SAFETY: `info` is a valid xdp_link_info of the size passed.
    let rc = unsafe {
        libbpf_sys::bpf_get_link_xdp_info(c_index, &mut info, size_of_val(&info) as _, 0)
    };
    if rc < 0 {
        return Err(errno(rc));
    }
    Ok(info)
}

fn detach(index: u32, flags: u32) {
    let Ok(c_index) = c_int::try_from(index) else {
        return;
    };
    // SAFETY: netlink request; fd -1 detaches.
    let rc = unsafe { libbpf_sys::bpf_set_link_xdp_fd(c_index, -1, flags) };
    if rc < 0 {
        tracing::warn!(
            interface_index = index,
            error = %errno(rc),
            "cannot detach the XDP fast path; detach it with `ip link set dev IF xdp off`"
        );
    }
}

/// The name of the loaded program `id`, as the kernel keeps it.
fn program_name(id: u32) -> Option<String> {
    // SAFETY: no preconditions; returns an fd we own or a negative value.
    let fd = unsafe { libbpf_sys::bpf_prog_get_fd_by_id(id) };
    if fd < 0 {
        return None;
    }
    // SAFETY: bpf_prog_info is plain data.
    let mut info: libbpf_sys::bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut len = size_of_val(&info) as u32;
    // SAFETY: `info` is valid for `len` bytes.
    let rc = unsafe {
        libbpf_sys::bpf_obj_get_info_by_fd(
            fd,
            (&mut info as *mut libbpf_sys::bpf_prog_info).cast(),
            &mut len,
        )
    };
    // SAFETY: closes the fd opened above.
    unsafe { libc::close(fd) };
    if rc != 0 {
        return None;
    }
    // SAFETY: the kernel NUL-terminates the name within its 16 bytes.
    let name = unsafe { CStr::from_ptr(info.name.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

/// Detaches a fast-path program a crashed router left on interface `index` (none other), with a
/// log line: without the fast path, libbpf would otherwise insert the new sockets into its
/// `xsks_map` and its stale `sessions` would go on forwarding in the kernel.
pub fn clear_stale(name: &str, index: u32) {
    let Ok(info) = link_info(index) else { return };
    if info.prog_id == 0 || program_name(info.prog_id).as_deref() != Some(KERNEL_NAME) {
        return;
    }
    tracing::warn!(
        interface = %name,
        program_id = info.prog_id,
        "detaching a stale XDP fast path left by a router that stopped uncleanly (the fast path \
         is off)"
    );
    let mode = if info.skb_prog_id != 0 {
        libbpf_sys::XDP_FLAGS_SKB_MODE
    } else {
        libbpf_sys::XDP_FLAGS_DRV_MODE
    };
    detach(index, mode);
}

/// Nanoseconds of `CLOCK_MONOTONIC_COARSE`, the clock of `OffloadEntry::last_seen_ns`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

/// Adds `n` to one of [`FastPath::port_counters`].
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
}
