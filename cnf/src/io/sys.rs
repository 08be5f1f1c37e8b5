//! The few system calls the drivers share, wrapped so that their errors are `io::Error`s.

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;

/// The index of interface `name` in the calling thread's network namespace.
pub(crate) fn if_index(name: &str) -> io::Result<u32> {
    let c_name = CString::new(name).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name contains a NUL byte",
        )
    })?;
    // SAFETY: `c_name` is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(index)
}

/// Waits up to `timeout` for any of `fds` to become ready for its events (`POLLIN`,
/// `POLLOUT`); returns how many are. An interrupted wait counts as a timeout. `ppoll(2)`, for
/// a timeout to the microsecond: drivers wake up to send frames a shaper held back.
pub(crate) fn poll_for(
    fds: &[(RawFd, libc::c_short)],
    timeout: std::time::Duration,
) -> io::Result<usize> {
    let mut pollfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&(fd, events)| libc::pollfd {
            fd,
            events,
            revents: 0,
        })
        .collect();
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: `pollfds` is a valid array of `pollfds.len()` entries; `ts` outlives the call;
    // a null signal mask leaves the thread's mask as it is.
    let ready = unsafe {
        libc::ppoll(
            pollfds.as_mut_ptr(),
            pollfds.len() as libc::nfds_t,
            &ts,
            std::ptr::null(),
        )
    };
    if ready < 0 {
        let error = io::Error::last_os_error();
        if error.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(error);
    }
    Ok(ready as usize)
}

/// Sets an integer socket option.
pub(crate) fn set_sockopt_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: passes a pointer to a live c_int and its exact size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Lifts the locked-memory limit, which older kernels charge UMEM and BPF maps to. Failing is
/// not an error by itself: kernels since 5.11 charge memory cgroups instead.
pub(crate) fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: passes a valid rlimit.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
    if rc != 0 {
        tracing::debug!(
            error = %io::Error::last_os_error(),
            "cannot lift RLIMIT_MEMLOCK; AF_XDP may fail on kernels before 5.11"
        );
    }
}
