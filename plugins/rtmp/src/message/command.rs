//! Command messages (types 20 and 17): a name, a transaction id, a command
//! object and arguments, all AMF0 (RTMP specification section 7.2).

use sluice_sdk::amf0::{self, Value};
use sluice_sdk::plugin::SessionError;

use super::type_id;
use crate::chunk::Message;

/// One command.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// Command name (`connect`, `publish`, `_result`, `onStatus`, ...).
    pub name: String,
    /// Transaction id (0 when no reply is expected).
    pub transaction_id: f64,
    /// The command object (`Null` when absent).
    pub object: Value,
    /// Further arguments.
    pub args: Vec<Value>,
}

impl Command {
    /// A command.
    pub fn new(name: &str, transaction_id: f64, object: Value, args: Vec<Value>) -> Self {
        Command {
            name: name.to_owned(),
            transaction_id,
            object,
            args,
        }
    }

    /// Parses a command message payload. For AMF3 command messages (type
    /// 17) the leading format byte is skipped; the values are AMF0.
    pub fn parse(type_id: u8, payload: &[u8]) -> Result<Self, SessionError> {
        let payload = if type_id == type_id::COMMAND_AMF3 {
            payload.strip_prefix(&[0]).unwrap_or(payload)
        } else {
            payload
        };
        let mut values = amf0::decode_all(payload)?.into_iter();
        let name = match values.next() {
            Some(Value::String(s) | Value::LongString(s)) => s,
            _ => return Err(SessionError::Malformed("command without a name".into())),
        };
        let transaction_id = values.next().and_then(|v| v.as_number()).unwrap_or(0.0);
        let object = values.next().unwrap_or(Value::Null);
        Ok(Command {
            name,
            transaction_id,
            object,
            args: values.collect(),
        })
    }

    /// The AMF0 command message on chunk stream `csid`, message stream `stream_id`.
    pub fn to_message(&self, csid: u32, stream_id: u32) -> Message {
        let mut payload = Vec::new();
        amf0::encode(&Value::String(self.name.clone()), &mut payload);
        amf0::encode(&Value::Number(self.transaction_id), &mut payload);
        amf0::encode(&self.object, &mut payload);
        for a in &self.args {
            amf0::encode(a, &mut payload);
        }
        Message {
            csid,
            timestamp: 0,
            type_id: type_id::COMMAND_AMF0,
            stream_id,
            payload,
        }
    }

    /// Argument `i` (after the command object) as a string, if it is one.
    pub fn arg_str(&self, i: usize) -> Option<&str> {
        self.args.get(i).and_then(Value::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_amf3() {
        let c = Command::new(
            "publish",
            5.0,
            Value::Null,
            vec![Value::string("720p"), Value::string("live")],
        );
        let m = c.to_message(8, 1);
        assert_eq!(Command::parse(m.type_id, &m.payload), Ok(c.clone()));
        let mut amf3 = vec![0];
        amf3.extend_from_slice(&m.payload);
        assert_eq!(Command::parse(type_id::COMMAND_AMF3, &amf3), Ok(c.clone()));
        assert_eq!(c.arg_str(0), Some("720p"));
        assert!(Command::parse(type_id::COMMAND_AMF0, &[0x05]).is_err());
        assert!(Command::parse(type_id::COMMAND_AMF0, &[0x02, 0, 9]).is_err());
    }
}
