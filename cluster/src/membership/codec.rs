//! foca's packets in the project's one codec: a membership header, then the
//! updates, each one bincode value laid end to end.

use super::MemberId;
use bytes::{Buf, BufMut};
use fixit_protocol::codec::{self, CodecError};
use foca::{Header, Member};

/// The membership protocol's codec.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct WireCodec;

impl WireCodec {
    fn put<T: serde::Serialize>(value: &T, mut buf: impl BufMut) -> Result<(), CodecError> {
        let bytes = codec::encode(value)?;
        buf.put_slice(&bytes);
        Ok(())
    }

    fn take<T: serde::de::DeserializeOwned>(mut buf: impl Buf) -> Result<T, CodecError> {
        // foca hands over one contiguous slice.
        let (value, used) = codec::decode_prefix(buf.chunk())?;
        buf.advance(used);
        Ok(value)
    }
}

impl foca::Codec<MemberId> for WireCodec {
    type Error = CodecError;

    fn encode_header(
        &mut self,
        header: &Header<MemberId>,
        buf: impl BufMut,
    ) -> Result<(), CodecError> {
        Self::put(header, buf)
    }

    fn decode_header(&mut self, buf: impl Buf) -> Result<Header<MemberId>, CodecError> {
        Self::take(buf)
    }

    fn encode_member(
        &mut self,
        member: &Member<MemberId>,
        buf: impl BufMut,
    ) -> Result<(), CodecError> {
        Self::put(member, buf)
    }

    fn decode_member(&mut self, buf: impl Buf) -> Result<Member<MemberId>, CodecError> {
        Self::take(buf)
    }
}

/// The sender named in a membership packet's header, if the packet starts with
/// one: checked against the certificate of the connection it came on.
pub(crate) fn sender_of(packet: &[u8]) -> Option<String> {
    let mut slice = packet;
    WireCodec::take::<Header<MemberId>>(&mut slice)
        .ok()
        .map(|header| header.src.name)
}

/// Whether the packet is its sender leaving: foca's leave is an update declaring
/// the sender's own identity down, sent by the sender. Seen here, the member is
/// shown `left` rather than `down`.
pub(crate) fn announces_leave(packet: &[u8]) -> bool {
    let mut rest = packet;
    let Ok(header) = WireCodec::take::<Header<MemberId>>(&mut rest) else {
        return false;
    };
    if rest.len() < 2 {
        return false;
    }
    // After the header: the number of updates (u16, big-endian), then each.
    let count = rest.get_u16();
    (0..count)
        .map_while(|_| WireCodec::take::<Member<MemberId>>(&mut rest).ok())
        .any(|member| *member.id() == header.src && member.state() == foca::State::Down)
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::{Codec, Message, State};

    fn id(name: &str) -> MemberId {
        MemberId {
            name: name.into(),
            addr: "127.0.0.1:7001".parse().unwrap(),
            incarnation: 42,
            rejoins: 0,
        }
    }

    #[test]
    fn a_header_and_updates_round_trip_end_to_end() {
        let header = Header {
            src: id("a"),
            src_incarnation: 3,
            dst: id("b"),
            message: Message::Ping(7),
        };
        let member = Member::new(id("c"), 1, State::Suspect);
        let mut packet = Vec::new();
        WireCodec.encode_header(&header, &mut packet).unwrap();
        WireCodec.encode_member(&member, &mut packet).unwrap();
        assert_eq!(sender_of(&packet).as_deref(), Some("a"));
        let mut rest = packet.as_slice();
        assert_eq!(WireCodec.decode_header(&mut rest).unwrap(), header);
        assert_eq!(WireCodec.decode_member(&mut rest).unwrap(), member);
        assert!(rest.is_empty());
        assert_eq!(sender_of(&[0xff, 0xff, 0xff]), None);
        assert!(!announces_leave(&packet), "no update count yet");
    }

    #[test]
    fn a_leave_is_the_senders_own_down_sent_by_itself() {
        use foca::{AccumulatingRuntime, Config, Foca};
        use rand::SeedableRng;
        let mut runtime = AccumulatingRuntime::new();
        let rng = rand::rngs::SmallRng::seed_from_u64(1);
        let mut foca = Foca::new(id("a"), Config::simple(), rng, WireCodec);
        let peer = MemberId {
            name: "b".into(),
            ..id("b")
        };
        foca.apply_many(
            [Member::new(peer, 0, State::Alive)].into_iter(),
            false,
            &mut runtime,
        )
        .unwrap();
        while runtime.to_send().is_some() {}
        foca.leave_cluster(&mut runtime).unwrap();
        let mut sent = Vec::new();
        while let Some((_, packet)) = runtime.to_send() {
            sent.push(packet);
        }
        assert!(!sent.is_empty());
        assert!(sent.iter().all(|packet| announces_leave(packet)));
        foca.change_identity(
            MemberId {
                incarnation: 43,
                ..id("a")
            },
            &mut runtime,
        )
        .unwrap();
        while let Some((_, packet)) = runtime.to_send() {
            assert!(!announces_leave(&packet), "a rejoin is no leave");
        }
    }
}
