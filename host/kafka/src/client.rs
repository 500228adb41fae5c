//! The client settings sources and the sink share: brokers, extra librdkafka
//! properties (TLS, SASL mechanism and user...), and the SASL password, which
//! arrives resolved from a secret reference and is never logged.

use std::collections::BTreeMap;

use rdkafka::ClientConfig;

#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("kafka: {0}")]
    Config(String),
    #[error("kafka: {what}: {source}")]
    Client { what: String, source: rdkafka::error::KafkaError },
}

/// Properties ehrgate sets itself, and their librdkafka aliases: overriding them
/// would break its guarantees (acks=0 publishes nothing durably; a timeout of 0
/// waits forever; offsets committed by the client itself would pass units the log
/// does not hold).
const OWNED: &[&str] = &[
    "enable.auto.commit",
    "enable.auto.offset.store",
    "group.id",
    "bootstrap.servers",
    "metadata.broker.list",
    "sasl.password",
    "acks",
    "request.required.acks",
    "message.timeout.ms",
    "delivery.timeout.ms",
];

/// Words in the names of properties librdkafka treats as sensitive.
const SENSITIVE: &[&str] = &["password", "passphrase", "secret", "jaas", "sasl.oauthbearer.config"];

#[derive(Clone)]
pub struct ClientSettings {
    /// `host:port[,host:port...]`.
    pub bootstrap: String,
    /// librdkafka properties, e.g. `security.protocol = "SASL_SSL"`.
    pub properties: BTreeMap<String, String>,
    /// `sasl.password`, resolved.
    pub sasl_password: Option<String>,
}

impl std::fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSettings")
            .field("bootstrap", &self.bootstrap)
            .field("properties", &self.properties)
            .field("sasl_password", &self.sasl_password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl ClientSettings {
    /// Refuses what would break a guarantee or put a secret in the configuration
    /// file: ehrgate's own properties, and any property named like a password,
    /// secret or key (use `sasl_password = "env:..."`, or files for TLS keys).
    pub fn check(&self) -> Result<(), KafkaError> {
        if self.bootstrap.trim().is_empty() {
            return Err(KafkaError::Config("`bootstrap` is empty; name the brokers, e.g. \"kafka-1:9092,kafka-2:9092\"".into()));
        }
        for k in self.properties.keys() {
            if OWNED.contains(&k.as_str()) {
                return Err(KafkaError::Config(format!("property `{k}` is set by ehrgate (at-least-once delivery depends on it); remove it")));
            }
            let lower = k.to_ascii_lowercase();
            let sensitive = SENSITIVE.iter().any(|w| lower.contains(w)) || lower.ends_with(".key.pem");
            if sensitive && !lower.ends_with(".location") && !lower.ends_with(".file") {
                return Err(KafkaError::Config(format!(
                    "property `{k}` would hold a secret in the configuration file; use `sasl_password = \"env:NAME\"` (or `file:/path`), and `*.location` properties for TLS keys"
                )));
            }
        }
        // A password sent in the clear is a password given away.
        let protocol = self.properties.get("security.protocol").map(|p| p.to_ascii_uppercase());
        if self.sasl_password.is_some() && protocol.as_deref() != Some("SASL_SSL") {
            return Err(KafkaError::Config("`sasl_password` is set but `security.protocol` is not SASL_SSL: the password would cross the network in the clear".into()));
        }
        Ok(())
    }

    /// The client's configuration: `defaults`, then the configured properties
    /// (which may override them), then the brokers and password.
    pub(crate) fn config(&self, client_id: &str, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("client.id", client_id);
        for (k, v) in defaults {
            c.set(*k, *v);
        }
        c.set("bootstrap.servers", &self.bootstrap);
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        if let Some(p) = &self.sasl_password {
            c.set("sasl.password", p);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(props: &[(&str, &str)]) -> ClientSettings {
        ClientSettings { bootstrap: "127.0.0.1:9092".into(), properties: props.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), sasl_password: Some("hunter2hunter2".into()) }
    }

    #[test]
    fn refuses_owned_properties_and_inline_secrets() {
        assert!(settings(&[("security.protocol", "SASL_SSL"), ("ssl.key.location", "/etc/k.pem")]).check().is_ok());
        for bad in [
            "enable.auto.commit",
            "sasl.password",
            "request.required.acks",
            "metadata.broker.list",
            "message.timeout.ms",
            "ssl.key.password",
            "sasl.oauthbearer.client.secret",
            "sasl.oauthbearer.assertion.private.key.passphrase",
            "sasl.oauthbearer.config",
            "ssl.key.pem",
            "sasl.jaas.config",
        ] {
            let e = settings(&[(bad, "x")]).check().unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
        let mut s = settings(&[("security.protocol", "SASL_SSL")]);
        s.bootstrap = " ".into();
        assert!(s.check().is_err());
        let e = settings(&[("security.protocol", "SASL_PLAINTEXT")]).check().unwrap_err().to_string();
        assert!(e.contains("in the clear"), "{e}");
    }

    #[test]
    fn debug_never_shows_the_password() {
        let d = format!("{:?}", settings(&[("security.protocol", "SASL_SSL")]));
        assert!(!d.contains("hunter2") && d.contains("redacted"), "{d}");
    }
}
