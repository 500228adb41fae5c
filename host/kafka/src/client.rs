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

/// Properties ehrgate sets itself: overriding them would break its guarantees.
const OWNED: &[&str] = &["enable.auto.commit", "enable.auto.offset.store", "group.id", "bootstrap.servers", "sasl.password", "acks"];

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
            if (lower.contains("password") || lower.contains("secret") || lower.ends_with(".key.pem") || lower.contains("jaas")) && !lower.ends_with(".location") {
                return Err(KafkaError::Config(format!(
                    "property `{k}` would hold a secret in the configuration file; use `sasl_password = \"env:NAME\"` (or `file:/path`), and `*.location` properties for TLS keys"
                )));
            }
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
        for bad in ["enable.auto.commit", "sasl.password", "ssl.key.password", "sasl.oauthbearer.client.secret", "ssl.key.pem", "sasl.jaas.config"] {
            let e = settings(&[(bad, "x")]).check().unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
        let mut s = settings(&[]);
        s.bootstrap = " ".into();
        assert!(s.check().is_err());
    }

    #[test]
    fn debug_never_shows_the_password() {
        let d = format!("{:?}", settings(&[]));
        assert!(!d.contains("hunter2") && d.contains("redacted"), "{d}");
    }
}
