//! Sources: every write key belongs to a named source with a channel, recorded on every event.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The touchpoint a source represents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Web,
    App,
    Server,
    Pos,
    Email,
    Sms,
    Push,
    Api,
    Other,
}

impl Channel {
    pub const ALL: [Channel; 9] = [
        Channel::Web,
        Channel::App,
        Channel::Server,
        Channel::Pos,
        Channel::Email,
        Channel::Sms,
        Channel::Push,
        Channel::Api,
        Channel::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Web => "web",
            Channel::App => "app",
            Channel::Server => "server",
            Channel::Pos => "pos",
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Push => "push",
            Channel::Api => "api",
            Channel::Other => "other",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl FromStr for Channel {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Channel::ALL
            .into_iter()
            .find(|channel| channel.as_str() == text)
            .ok_or_else(|| {
                let known: Vec<&str> = Channel::ALL
                    .iter()
                    .map(|channel| channel.as_str())
                    .collect();
                format!(
                    "unknown channel `{text}`, expected one of {}",
                    known.join(", ")
                )
            })
    }
}

/// A named source of events. The write key itself lives in the server's key table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceConfig {
    pub name: String,
    pub channel: Channel,
}
