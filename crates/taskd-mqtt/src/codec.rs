//! The packet codec of a device connection: `rumqttc`'s MQTT 3.1.1 codec, plus MQTT 3.1.
//!
//! MQTT 3.1 differs from 3.1.1 on the wire only in its CONNECT's protocol name and level
//! (`MQIsdp`, 3 instead of `MQTT`, 4); every later packet is the same. So a 3.1 CONNECT is
//! handed to the 3.1.1 codec with those two fields written as 3.1.1's, and the
//! connection goes on in 3.1.1 packets. Nothing else of the packet is read here.

use bytes::{BufMut, BytesMut};
use rumqttc::mqttbytes::v4::{Codec, Packet};
use rumqttc::mqttbytes::{Error, PacketType, check};
use tokio_util::codec::{Decoder, Encoder};

/// `MQIsdp` with its length prefix, then level 3: how a 3.1 CONNECT's variable header
/// starts.
const MQTT_3_1_NAME_AND_LEVEL: &[u8] = b"\x00\x06MQIsdp\x03";
/// The same fields in 3.1.1.
const MQTT_3_1_1_NAME_AND_LEVEL: &[u8] = b"\x00\x04MQTT\x04";

#[derive(Debug, Clone)]
pub struct DeviceCodec {
    inner: Codec,
    /// Whether the CONNECT (the first packet) is still to come.
    awaiting_connect: bool,
    /// The device spoke MQTT 3.1.
    pub mqtt_3_1: bool,
}

impl DeviceCodec {
    pub fn new(max_packet_bytes: usize) -> Self {
        DeviceCodec {
            inner: Codec {
                max_incoming_size: max_packet_bytes,
                max_outgoing_size: max_packet_bytes,
            },
            awaiting_connect: true,
            mqtt_3_1: false,
        }
    }
}

/// The length of a fixed header's remaining-length field (MQTT's variable-length
/// integer: bytes with the high bit set continue it).
fn remaining_length_bytes(frame: &[u8]) -> usize {
    frame[1..]
        .iter()
        .take(4)
        .take_while(|b| *b & 0x80 != 0)
        .count()
        + 1
}

fn put_remaining_length(buf: &mut BytesMut, mut len: usize) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        buf.put_u8(byte);
        if len == 0 {
            break;
        }
    }
}

/// Rewrites a complete 3.1 CONNECT at the start of `src` as a 3.1.1 one; false if the
/// first frame is not a 3.1 CONNECT.
fn upgrade_3_1_connect(src: &mut BytesMut, max: usize) -> Result<bool, Error> {
    let header = check(src.iter(), max)?;
    if header.packet_type()? != PacketType::Connect {
        return Ok(false);
    }
    let frame_len = header.frame_length();
    let header_len = 1 + remaining_length_bytes(src);
    let name = &src[header_len..frame_len];
    if !name.starts_with(MQTT_3_1_NAME_AND_LEVEL) {
        return Ok(false);
    }
    let rest = &name[MQTT_3_1_NAME_AND_LEVEL.len()..];
    let remaining = MQTT_3_1_1_NAME_AND_LEVEL.len() + rest.len();
    let mut upgraded = BytesMut::with_capacity(src.len());
    upgraded.put_u8(src[0]);
    put_remaining_length(&mut upgraded, remaining);
    upgraded.put_slice(MQTT_3_1_1_NAME_AND_LEVEL);
    upgraded.put_slice(rest);
    upgraded.put_slice(&src[frame_len..]);
    *src = upgraded;
    Ok(true)
}

impl Decoder for DeviceCodec {
    type Item = Packet;
    type Error = Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Packet>, Error> {
        if self.awaiting_connect {
            match upgrade_3_1_connect(src, self.inner.max_incoming_size) {
                Ok(upgraded) => self.mqtt_3_1 = upgraded,
                Err(Error::InsufficientBytes(n)) => {
                    src.reserve(n);
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
        let packet = self.inner.decode(src)?;
        if packet.is_some() {
            self.awaiting_connect = false;
        }
        Ok(packet)
    }
}

impl Encoder<Packet> for DeviceCodec {
    type Error = Error;

    fn encode(&mut self, item: Packet, dst: &mut BytesMut) -> Result<(), Error> {
        self.inner.encode(item, dst)
    }
}

#[cfg(test)]
mod tests {
    use rumqttc::mqttbytes::Protocol;
    use rumqttc::mqttbytes::v4::{Connect, Login};

    use super::*;

    fn connect_bytes(client_id: &str) -> BytesMut {
        let mut connect = Connect::new(client_id);
        connect.login = Some(Login::new("dev", "pw"));
        let mut buf = BytesMut::new();
        Packet::Connect(connect).write(&mut buf, 1 << 20).unwrap();
        buf
    }

    /// The 3.1 form of a 3.1.1 CONNECT: two bytes longer.
    fn as_mqtt_3_1(v4: &[u8]) -> BytesMut {
        let header_len = 1 + remaining_length_bytes(v4);
        let rest = &v4[header_len + MQTT_3_1_1_NAME_AND_LEVEL.len()..];
        let mut out = BytesMut::new();
        out.put_u8(v4[0]);
        put_remaining_length(&mut out, MQTT_3_1_NAME_AND_LEVEL.len() + rest.len());
        out.put_slice(MQTT_3_1_NAME_AND_LEVEL);
        out.put_slice(rest);
        out
    }

    #[test]
    fn a_3_1_connect_reads_as_its_3_1_1_twin() {
        // A long client id makes the remaining length two bytes in one form.
        for id in ["dev_0_0_2026113015", &"d".repeat(200)] {
            let v4 = connect_bytes(id);
            let mut v3 = as_mqtt_3_1(&v4);
            v3.put_slice(&[0xC0, 0x00]); // a PINGREQ right behind it
            let mut codec = DeviceCodec::new(1 << 20);
            let Some(Packet::Connect(c)) = codec.decode(&mut v3).unwrap() else {
                panic!("not a CONNECT");
            };
            assert!(codec.mqtt_3_1);
            assert_eq!(c.protocol, Protocol::V4);
            assert_eq!(c.client_id, id);
            assert_eq!(c.login, Some(Login::new("dev", "pw")));
            assert_eq!(codec.decode(&mut v3).unwrap(), Some(Packet::PingReq));
        }
    }

    #[test]
    fn a_3_1_1_connect_and_partial_frames_pass_through() {
        let v4 = connect_bytes("dev_0_0_2026113015");
        let mut codec = DeviceCodec::new(1 << 20);
        let mut partial = BytesMut::from(&v4[..5]);
        assert_eq!(codec.decode(&mut partial).unwrap(), None);
        partial.put_slice(&v4[5..]);
        assert!(matches!(
            codec.decode(&mut partial).unwrap(),
            Some(Packet::Connect(_))
        ));
        assert!(!codec.mqtt_3_1);
    }
}
