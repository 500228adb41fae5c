//! Landed events to a Kafka topic: one record per unit, keyed by its bronze record
//! id, JSON (`ehrgate_ingest::LandedEvent`). The producer waits for every in-sync
//! replica (`acks=all`); [`LandedTopic::publish`] returns only once every record of
//! the group is acknowledged, so the flow checkpoints its log only after that.

use std::time::Duration;

use ehrgate_ingest::{LandedEvent, LandedSink};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

use crate::client::{ClientSettings, KafkaError};

/// Records in flight at once while a group is published.
const IN_FLIGHT: usize = 1024;

pub struct LandedTopic {
    producer: FutureProducer,
    topic: String,
}

impl LandedTopic {
    pub fn new(client: &ClientSettings, topic: &str) -> Result<LandedTopic, KafkaError> {
        client.check()?;
        if topic.trim().is_empty() {
            return Err(KafkaError::Config("[kafka.landed] topic is empty".into()));
        }
        let producer: FutureProducer = client
            .config("ehrgate-landed", &[("linger.ms", "5")])
            .set("acks", "all")
            // A broker that cannot take a record within this long fails the group,
            // which is retried (with backoff) while the log holds its units.
            .set("message.timeout.ms", "30000")
            .create()
            .map_err(|source| KafkaError::Client { what: "landed events producer".into(), source })?;
        Ok(LandedTopic { producer, topic: topic.to_owned() })
    }

    /// Ask the brokers about the topic (blocks up to `timeout`): its partition
    /// count, or why it cannot be written. A topic that does not exist holds every
    /// unit in the log until it does: `serve` says so at start.
    pub fn check_topic(&self, timeout: Duration) -> Result<usize, String> {
        use rdkafka::producer::Producer;
        let md = self.producer.client().fetch_metadata(Some(&self.topic), Timeout::After(timeout)).map_err(|e| format!("cannot reach the brokers: {e}"))?;
        let t = md.topics().iter().find(|t| t.name() == self.topic).ok_or_else(|| "the brokers did not describe it".to_string())?;
        match t.error() {
            Some(e) => Err(format!("{:?}", rdkafka::types::RDKafkaErrorCode::from(e))),
            None if t.partitions().is_empty() => Err("it has no partitions".into()),
            None => Ok(t.partitions().len()),
        }
    }
}

impl LandedSink for LandedTopic {
    fn publish<'a>(&'a self, events: &'a [LandedEvent]) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let (producer, topic) = (&self.producer, self.topic.as_str());
            let mut pending = FuturesUnordered::new();
            let mut failed: Vec<String> = Vec::new();
            for e in events {
                if pending.len() >= IN_FLIGHT
                    && let Some(Err(why)) = pending.next().await
                {
                    failed.push(why);
                }
                pending.push(async move {
                    let payload = e.to_json();
                    let record = FutureRecord::to(topic).key(&e.record_id).payload(&payload);
                    producer.send(record, Timeout::After(Duration::from_secs(60))).await.map(|_| ()).map_err(|(err, _)| err.to_string())
                });
            }
            while let Some(r) = pending.next().await {
                if let Err(why) = r {
                    failed.push(why);
                }
            }
            match failed.first() {
                None => Ok(()),
                Some(first) => Err(format!("{} of {} records to topic `{topic}` not acknowledged (first: {first})", failed.len(), events.len())),
            }
        })
    }
}
