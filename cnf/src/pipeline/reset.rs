//! Answering a client with a TCP reset when its session cannot continue: the session's service
//! location became unreachable and the service is reachable at another location, whose server
//! does not know the connection. A reset now lets the application reconnect at once (to the
//! healthy location) instead of retransmitting into a dead path for minutes.

use super::{Action, Egress, Interface, Pipeline, ip};
use crate::packet::{Ipv4Packet, Ipv6Packet, TcpSegment};
use crate::pipeline::{DropReason, PacketBuf};
use crate::session::SessionId;

const TCP_HEADER: usize = 20;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

impl Pipeline {
    /// Rewrites the client's segment `p` (still as it arrived from the LAN) into the reset the
    /// service would have sent (RFC 9293 §3.10.7.1: seq from the segment's ACK, else ACK of
    /// everything it carried), removes the session and sends the reset back to the client.
    pub(super) fn reset_to_client(
        &mut self,
        id: SessionId,
        pkt: &mut PacketBuf<'_>,
        p: &ip::Parsed,
    ) -> Result<Action, DropReason> {
        let (lan, vlan) = {
            let s = self.sessions.get(id).ok_or(DropReason::NoSession)?;
            (s.state.lan, s.state.vlan)
        };
        let (seq, ack, flags, seg_len) = {
            let l4 = pkt.data().get(p.l4..p.end).ok_or(DropReason::Malformed)?;
            let seg = TcpSegment::new_checked(l4).map_err(|_| DropReason::Malformed)?;
            let carried = seg.payload().len() as u32 + u32::from(seg.syn()) + u32::from(seg.fin());
            (seg.seq_number(), seg.ack_number(), seg.flags(), carried)
        };
        let end = p.l4 + TCP_HEADER;
        if pkt.capacity() < end {
            return Err(DropReason::NoRoom);
        }
        pkt.set_len(end);
        {
            let l4 = pkt.raw().get_mut(p.l4..end).ok_or(DropReason::NoRoom)?;
            l4.fill(0);
            let mut seg = TcpSegment::new_unchecked(l4);
            seg.set_header_len(TCP_HEADER);
            if flags & ACK != 0 {
                seg.set_seq_number(ack);
                seg.set_flags(RST);
            } else {
                seg.set_ack_number(seq.wrapping_add(seg_len));
                seg.set_flags(RST | ACK);
            }
        }
        if p.v6 {
            Ipv6Packet::new_unchecked(pkt.raw()).set_hop_limit(64);
        } else {
            Ipv4Packet::new_unchecked(pkt.raw()).set_ttl(64);
        }
        let reply = ip::Parsed {
            payload: end,
            end,
            ..*p
        };
        ip::set_tuple(pkt.raw(), &reply, &p.key.reversed())?;
        ip::refill(pkt.raw(), &reply, end)?;
        self.remove_session(id, false);
        self.counters.sessions_reset += 1;
        Ok(Action::Forward(Egress {
            interface: Interface::Lan(lan),
            vlan: (vlan != 0).then_some(vlan),
            next_hop: p.src(),
            class: 0,
        }))
    }
}
