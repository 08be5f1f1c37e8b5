//! TCP state as a router in the middle sees it: enough to pick the right idle timeout, to count
//! half-open sessions and to notice a connection's end. Not a TCP implementation: no windows, no
//! sequence checks — the endpoints own those.

/// Flags of a segment (the bits of the TCP header's flags byte that matter here).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Segment {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
}

impl Segment {
    /// From the TCP header's flags field (the low 9 bits of bytes 12..14).
    pub fn from_flags(flags: u16) -> Self {
        Self {
            fin: flags & 0x001 != 0,
            syn: flags & 0x002 != 0,
            rst: flags & 0x004 != 0,
            ack: flags & 0x010 != 0,
        }
    }

    /// The only segment that may open a session: SYN without ACK.
    pub fn opens(&self) -> bool {
        self.syn && !self.ack && !self.rst
    }
}

/// Where a TCP session is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum TcpState {
    /// The initiator's SYN was seen; nothing back yet. Counts as half-open.
    #[default]
    SynSent,
    /// The responder's SYN-ACK was seen. Still half-open until the initiator acknowledges it.
    SynReceived,
    Established,
    /// One side has sent FIN.
    FinWait,
    /// Both sides have sent FIN.
    Closing,
    /// RST seen, or the last ACK after both FINs: the session lingers briefly for stragglers.
    Closed,
}

impl TcpState {
    pub fn is_half_open(self) -> bool {
        matches!(self, TcpState::SynSent | TcpState::SynReceived)
    }

    /// The state after `segment`, sent by the initiator (`reply == false`) or the responder.
    pub fn next(self, segment: Segment, reply: bool) -> TcpState {
        use TcpState::*;
        if segment.rst {
            return Closed;
        }
        match self {
            SynSent if reply && segment.syn && segment.ack => SynReceived,
            SynReceived if !reply && segment.ack && !segment.syn => {
                if segment.fin {
                    FinWait
                } else {
                    Established
                }
            }
            Established if segment.fin => FinWait,
            FinWait if segment.fin => Closing,
            Closing if segment.ack && !segment.fin => Closed,
            state => state,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYN: Segment = Segment {
        syn: true,
        ack: false,
        fin: false,
        rst: false,
    };
    const SYN_ACK: Segment = Segment {
        syn: true,
        ack: true,
        fin: false,
        rst: false,
    };
    const ACK: Segment = Segment {
        syn: false,
        ack: true,
        fin: false,
        rst: false,
    };
    const FIN_ACK: Segment = Segment {
        syn: false,
        ack: true,
        fin: true,
        rst: false,
    };
    const RST: Segment = Segment {
        syn: false,
        ack: false,
        fin: false,
        rst: true,
    };

    #[test]
    fn a_whole_connection() {
        let mut s = TcpState::SynSent;
        assert!(SYN.opens() && !SYN_ACK.opens() && !ACK.opens());
        s = s.next(SYN, false);
        assert_eq!(s, TcpState::SynSent);
        s = s.next(SYN_ACK, true);
        assert_eq!(s, TcpState::SynReceived);
        assert!(s.is_half_open());
        s = s.next(ACK, false);
        assert_eq!(s, TcpState::Established);
        assert!(!s.is_half_open());
        s = s.next(ACK, true);
        assert_eq!(s, TcpState::Established);
        s = s.next(FIN_ACK, false);
        assert_eq!(s, TcpState::FinWait);
        s = s.next(FIN_ACK, true);
        assert_eq!(s, TcpState::Closing);
        s = s.next(ACK, false);
        assert_eq!(s, TcpState::Closed);
    }

    #[test]
    fn a_syn_ack_from_the_initiator_does_not_advance() {
        assert_eq!(TcpState::SynSent.next(SYN_ACK, false), TcpState::SynSent);
        assert_eq!(TcpState::SynSent.next(ACK, true), TcpState::SynSent);
    }

    #[test]
    fn reset_closes_from_anywhere() {
        for s in [
            TcpState::SynSent,
            TcpState::SynReceived,
            TcpState::Established,
            TcpState::FinWait,
        ] {
            assert_eq!(s.next(RST, true), TcpState::Closed);
        }
        assert_eq!(Segment::from_flags(0x012), SYN_ACK);
        assert_eq!(Segment::from_flags(0x011), FIN_ACK);
    }
}
