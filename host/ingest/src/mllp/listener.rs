//! The MLLP listener and its connections.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ehrgate_sdk::hl7;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::ack::{self, AckContext};
use super::frame::{Decoder, Frame, Framing};
use crate::flow::{Flow, Outcome};
use crate::inbound::{Inbound, InboundKind};
use crate::route::Router;
use ehrgate_metrics::{ListenerInfo, ListenerMetrics};
use tracing::{Instrument, Span};

/// How a listener acknowledges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// An HL7 ACK message per message (AA / AE / AR, or CA / CE / CR in enhanced mode).
    Hl7,
    /// MLLP release 2 commit acknowledgement: `<start>0x06<end>` once the message is
    /// durable, `<start>0x15<end>` (NAK) when it could not be stored (as Cloverleaf's
    /// MLLP2 protocol expects).
    Commit,
}

#[derive(Debug, Clone)]
pub struct MllpConfig {
    pub name: String,
    pub bind: SocketAddr,
    pub framing: Framing,
    pub ack: AckMode,
    pub router: Router,
    pub max_message_bytes: usize,
    /// Connections at once; past it a new connection is closed at once (and
    /// logged). See also `max_connections_per_peer`.
    pub max_connections: usize,
    /// Connections at once from one peer address, so that one sender (or one
    /// attacker) cannot take every slot.
    pub max_connections_per_peer: usize,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// A frame, once its first byte arrived, must be complete within this long,
    /// however slowly its bytes trickle in (a slow-loris sender cannot hold a
    /// connection by sending a byte now and then).
    pub frame_timeout: Duration,
    /// Messages a connection may have sent before reading their ACKs.
    pub max_in_flight: usize,
    /// Follow MSH-15's conditions for enhanced-mode accept ACKs (NE: none, ER: only
    /// on error, SU: only on success). Off by default: MLLP senders wait for a
    /// reply to every frame.
    pub honour_msh15: bool,
    /// TLS (see [`super::tls::server_config`]); plain TCP when `None`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl MllpConfig {
    pub fn new(name: &str, bind: SocketAddr, adapter: &str) -> MllpConfig {
        MllpConfig {
            name: name.into(),
            bind,
            framing: Framing::mllp(),
            ack: AckMode::Hl7,
            router: Router { rules: Vec::new(), default: Some(adapter.into()) },
            max_message_bytes: 16 << 20,
            max_connections: 256,
            max_connections_per_peer: 32,
            idle_timeout: Duration::from_secs(600),
            frame_timeout: Duration::from_secs(60),
            max_in_flight: 64,
            honour_msh15: false,
            tls: None,
        }
    }
}

/// Bind the listener and serve until `shutdown` turns true. Returns the bound
/// address (port 0 picks a free one) and the accept loop's task.
pub async fn bind(cfg: MllpConfig, flow: Flow, shutdown: watch::Receiver<bool>) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(cfg.bind).await?;
    start(listener, cfg, flow, shutdown)
}

/// Serve on a listener bound beforehand (so that a taken port is found before
/// anything else starts).
pub fn start(listener: TcpListener, cfg: MllpConfig, flow: Flow, shutdown: watch::Receiver<bool>) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let addr = listener.local_addr()?;
    let default = cfg.router.default.clone().unwrap_or_else(|| "(routes only)".into());
    ehrgate_metrics::listener(&cfg.name).describe(ListenerInfo { kind: "mllp".into(), bind: addr.to_string(), adapter: default });
    let task = tokio::spawn(accept_loop(listener, Arc::new(cfg), flow, shutdown));
    Ok((addr, task))
}

async fn accept_loop(listener: TcpListener, cfg: Arc<MllpConfig>, flow: Flow, mut shutdown: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(cfg.max_connections.max(1)));
    let per_peer: Arc<std::sync::Mutex<HashMap<std::net::IpAddr, usize>>> = Arc::default();
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(listener = %cfg.name, "accept failed: {e}");
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(listener = %cfg.name, %peer, "connection limit of {} reached; closing the new connection", cfg.max_connections);
            continue;
        };
        let Some(peer_slot) = PeerSlot::take(&per_peer, peer.ip(), cfg.max_connections_per_peer) else {
            tracing::warn!(listener = %cfg.name, %peer, "{} connections from this address already; closing the new one", cfg.max_connections_per_peer);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (cfg, flow, shutdown) = (cfg.clone(), flow.clone(), shutdown.clone());
        conns.spawn(async move {
            tracing::debug!(listener = %cfg.name, %peer, "connection opened");
            match cfg.tls.clone() {
                None => connection(stream, peer, &cfg, flow, shutdown).await,
                Some(tls) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                    match tokio::time::timeout(Duration::from_secs(30), acceptor.accept(stream)).await {
                        Ok(Ok(s)) => connection(s, peer, &cfg, flow, shutdown).await,
                        Ok(Err(e)) => tracing::warn!(listener = %cfg.name, %peer, "TLS handshake failed: {e}"),
                        Err(_) => tracing::warn!(listener = %cfg.name, %peer, "TLS handshake did not finish within 30 s"),
                    }
                }
            }
            drop(slot);
            drop(peer_slot);
        });
        while conns.try_join_next().is_some() {}
    }
    // Stop accepting; let open connections finish the messages they sent.
    drop(listener);
    while conns.join_next().await.is_some() {}
}

/// One connection's share of its peer address's limit, given back on drop.
struct PeerSlot {
    map: Arc<std::sync::Mutex<HashMap<std::net::IpAddr, usize>>>,
    ip: std::net::IpAddr,
}

impl PeerSlot {
    fn take(map: &Arc<std::sync::Mutex<HashMap<std::net::IpAddr, usize>>>, ip: std::net::IpAddr, max: usize) -> Option<PeerSlot> {
        let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(ip).or_default();
        if *n >= max.max(1) {
            return None;
        }
        *n += 1;
        Some(PeerSlot { map: map.clone(), ip })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// What the writer half owes the peer, in the order the frames arrived.
/// Each carries the instant its frame was complete (the ACK latency's start).
/// The span (`mllp.unit`, or `mllp.batch` for a batch frame) ends when the answer is written.
enum Owed {
    One(Instant, Span, AckContext, oneshot::Receiver<Outcome>),
    /// A batch frame: a batch of ACKs, one per message, and a note for BTS-2 (a
    /// trailer count that disagrees with the messages received).
    Batch(Instant, Span, AckContext, Vec<(AckContext, oneshot::Receiver<Outcome>)>, Option<String>),
    /// An answer known at once (a frame refused before it was stored).
    Now(Instant, AckContext, Outcome),
}

/// What an answer counts as in the listener's metrics.
fn answer_codes(mode: AckMode, ctxs: &[&AckContext], outcomes: &[Outcome], sent: bool) -> Vec<&'static str> {
    match (mode, sent) {
        (_, false) => vec!["none"],
        (AckMode::Commit, true) => vec![if commit_byte(outcomes) == 0x06 { "ACK" } else { "NAK" }],
        (AckMode::Hl7, true) => ctxs.iter().zip(outcomes).map(|(c, o)| ack::code(c, o)).collect(),
    }
}

async fn connection<S>(stream: S, peer: SocketAddr, cfg: &MllpConfig, flow: Flow, mut shutdown: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (owed_tx, mut owed_rx) = mpsc::channel::<Owed>(cfg.max_in_flight.max(1));
    let framing = cfg.framing.clone();
    let mode = cfg.ack;
    let honour = cfg.honour_msh15;
    let idle = cfg.idle_timeout;
    let name = cfg.name.clone();
    let metrics = ehrgate_metrics::listener(&cfg.name);
    let writer = tokio::spawn(async move {
        while let Some(owed) = owed_rx.recv().await {
            let (since, span, codes, bytes) = match owed {
                Owed::One(since, span, ctx, rx) => {
                    let outcome = [rx.await.unwrap_or_else(|_| Outcome::Failed("the gateway stopped".into()))];
                    let bytes = reply(&framing, mode, honour, &ctx, &outcome);
                    (since, span, answer_codes(mode, &[&ctx], &outcome, bytes.is_some()), bytes)
                }
                Owed::Now(since, ctx, outcome) => {
                    let outcome = [outcome];
                    let bytes = reply(&framing, mode, honour, &ctx, &outcome);
                    (since, Span::none(), answer_codes(mode, &[&ctx], &outcome, bytes.is_some()), bytes)
                }
                Owed::Batch(since, span, header, items, note) => {
                    let mut outcomes = Vec::with_capacity(items.len());
                    let mut ctxs = Vec::with_capacity(items.len());
                    for (ctx, rx) in items {
                        outcomes.push(rx.await.unwrap_or_else(|_| Outcome::Failed("the gateway stopped".into())));
                        ctxs.push(ctx);
                    }
                    let bytes = batch_reply(&framing, mode, honour, &header, &ctxs, &outcomes, note.as_deref());
                    let refs: Vec<&AckContext> = ctxs.iter().collect();
                    (since, span, answer_codes(mode, &refs, &outcomes, bytes.is_some()), bytes)
                }
            };
            let n_answers = codes.len();
            if let [one] = codes.as_slice() {
                span.record("answer", *one);
            }
            for c in codes {
                metrics.answered(c);
            }
            if let Some(bytes) = bytes {
                match tokio::time::timeout(idle, wr.write_all(&bytes)).await {
                    Ok(Ok(())) => {
                        // (a batch's messages are all answered by this one write)
                        let took = since.elapsed();
                        for _ in 0..n_answers {
                            metrics.answer_latency.0.observe(took);
                        }
                        drop(span);
                    }
                    Ok(Err(e)) => {
                        tracing::info!(listener = %name, %peer, "could not send an acknowledgement ({e}); the sender will resend");
                        return;
                    }
                    Err(_) => {
                        tracing::warn!(listener = %name, %peer, "the peer has not read its acknowledgements for {idle:?}; closing the connection");
                        return;
                    }
                }
            }
        }
        let _ = wr.shutdown().await;
    });

    let received = ehrgate_metrics::listener(&cfg.name);
    let mut decoder = Decoder::new(cfg.framing.clone(), cfg.max_message_bytes);
    let mut buf = vec![0u8; 64 * 1024];
    // When the frame being received must be complete: set by its first byte, not
    // moved by later ones.
    let mut frame_deadline: Option<tokio::time::Instant> = None;
    'read: loop {
        let wait = match frame_deadline {
            Some(d) => d.saturating_duration_since(tokio::time::Instant::now()).min(cfg.idle_timeout),
            None => cfg.idle_timeout,
        };
        let n = tokio::select! {
            r = tokio::time::timeout(wait, rd.read(&mut buf)) => match r {
                Ok(Ok(0)) => break,
                Ok(Ok(n)) => n,
                Ok(Err(e)) => {
                    tracing::debug!(listener = %cfg.name, %peer, "read failed: {e}");
                    break;
                }
                Err(_) if frame_deadline.is_some_and(|d| tokio::time::Instant::now() >= d) => {
                    tracing::warn!(listener = %cfg.name, %peer, "a frame was not complete within {:?} of its first byte; closing the connection", cfg.frame_timeout);
                    break;
                }
                Err(_) => {
                    tracing::info!(listener = %cfg.name, %peer, "idle for {:?}; closing the connection", cfg.idle_timeout);
                    break;
                }
            },
            _ = shutdown.changed() => break,
        };
        decoder.extend(&buf[..n]);
        loop {
            match decoder.next_frame() {
                Ok(None) => break,
                Ok(Some(Frame::Skipped(k))) => tracing::debug!(listener = %cfg.name, %peer, "skipped {k} bytes outside any frame"),
                Ok(Some(Frame::Abandoned(k))) => {
                    tracing::warn!(listener = %cfg.name, %peer, "a frame of {k} bytes had no end block before the next start block: dropped (not acknowledged; the sender resends it)")
                }
                Ok(Some(Frame::Message(bytes))) => {
                    let owed = submit_frame(cfg, &flow, &received, bytes).await;
                    // Waits while the peer has max_in_flight ACKs unread; a writer that
                    // gave up (peer gone or not reading) ends the connection.
                    if owed_tx.send(owed).await.is_err() {
                        break 'read;
                    }
                }
                Err(e) => {
                    tracing::warn!(listener = %cfg.name, %peer, "{e}; answering AR and closing the connection (raise max_message_bytes if such messages are expected)");
                    // A NAK the sender can match (MSH-10 from the frame's first bytes),
                    // so that it stops resending and alerts instead.
                    let ctx = AckContext::fallback(decoder.pending_prefix(4096));
                    let why = format!("message larger than this listener's limit of {} bytes; not stored", cfg.max_message_bytes);
                    let _ = owed_tx.send(Owed::Now(Instant::now(), ctx, Outcome::Failed(why))).await;
                    break 'read;
                }
            }
        }
        frame_deadline = match (decoder.has_partial(), frame_deadline) {
            (false, _) => None,
            (true, Some(d)) => Some(d),
            (true, None) => Some(tokio::time::Instant::now() + cfg.frame_timeout),
        };
    }
    drop(owed_tx);
    let _ = writer.await;
    tracing::debug!(listener = %cfg.name, %peer, "connection closed");
}

fn inbound(cfg: &MllpConfig, adapter: Option<&str>, raw: Vec<u8>) -> Inbound {
    Inbound {
        kind: InboundKind::Hl7,
        source: format!("mllp:{}", cfg.name),
        adapter: adapter.unwrap_or("").to_string(),
        received_at: ehrgate_lake::now_micros(),
        raw,
    }
}

fn is_batch(text: &str) -> bool {
    let t = text.trim_start_matches(['\u{feff}', '\r', '\n', ' ']);
    t.starts_with("FHS") || t.starts_with("BHS")
}

/// Submit one frame's message(s) to the flow; returns what the peer is owed.
async fn submit_frame(cfg: &MllpConfig, flow: &Flow, m: &ListenerMetrics, bytes: Vec<u8>) -> Owed {
    let since = Instant::now();
    let text = hl7::decode_bytes(&bytes);
    if is_batch(&text) {
        if let Some(envelope) = split_batch(&text) {
            let mut items = Vec::with_capacity(envelope.messages.len());
            for raw in &envelope.messages {
                // Each message on its own: one that does not parse is stored and
                // answered AE in its place; the others are processed as usual.
                let (ctx, adapter) = match hl7::Message::parse(raw) {
                    Ok(m) => (AckContext::from_message(&m), cfg.router.pick(&m).map(str::to_owned)),
                    Err(_) => (AckContext::fallback(raw.as_bytes()), cfg.router.default.clone()),
                };
                let rx = flow.submit(inbound(cfg, adapter.as_deref(), raw.as_bytes().to_vec())).await;
                m.unit_received();
                items.push((ctx, rx));
            }
            let note = match envelope.declared {
                Some(n) if n != envelope.messages.len() => {
                    tracing::warn!(listener = %cfg.name, "a batch's trailer declares {n} messages but it holds {}", envelope.messages.len());
                    Some(format!("trailer count {n} but {} messages received", envelope.messages.len()))
                }
                _ => None,
            };
            let span = tracing::info_span!("mllp.batch", listener = %cfg.name, messages = envelope.messages.len());
            return Owed::Batch(since, span, envelope.header, items, note);
        }
    }
    let (ctx, adapter) = match hl7::Message::parse(&text) {
        Ok(m) => (AckContext::from_message(&m), cfg.router.pick(&m).map(str::to_owned)),
        // Unparseable: still stored and quarantined (the listener's default adapter
        // is named so that reprocessing knows where it was headed), then AE.
        Err(_) => (AckContext::fallback(&bytes), cfg.router.default.clone()),
    };
    let span = tracing::info_span!("mllp.unit", listener = %cfg.name, control_id = %ctx.control_id.escape_debug(), answer = tracing::field::Empty);
    let rx = flow.submit(inbound(cfg, adapter.as_deref(), bytes)).instrument(span.clone()).await;
    m.unit_received();
    Owed::One(since, span, ctx, rx)
}

/// A batch frame split into its messages without parsing them (so that one bad
/// message cannot take the others with it).
struct Envelope {
    header: AckContext,
    messages: Vec<String>,
    /// BTS-1 (summed over batches), else FTS-1.
    declared: Option<usize>,
}

/// Split FHS/BHS ... BTS/FTS at each MSH; each message keeps its bytes exactly as
/// received (its slice of the frame, line ends included). `None` when it holds no
/// message, or a segment comes before the first MSH (then the frame is handled as
/// one message, and refused).
fn split_batch(text: &str) -> Option<Envelope> {
    let text = text.trim_start_matches('\u{feff}');
    let mut header: Option<AckContext> = None;
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let (mut bts, mut fts) = (None::<usize>, None::<usize>);
    let count = |line: &str| -> Option<usize> {
        let sep = line.get(3..)?.chars().next()?;
        line[3 + sep.len_utf8()..].split(sep).next()?.trim().parse().ok()
    };
    // The envelope itself must be sound (as the SDK's batch parser requires): a
    // broken envelope refuses the whole frame; a broken message only itself.
    let (mut in_batch, mut closed, mut first) = (false, false, true);
    let mut pos = 0;
    while pos < text.len() {
        let len = text[pos..].find(['\r', '\n']).unwrap_or(text.len() - pos);
        let line = &text[pos..pos + len];
        let mut end = pos + len;
        while end < text.len() && matches!(text.as_bytes()[end], b'\r' | b'\n') {
            end += 1;
        }
        if !line.trim().is_empty() && closed {
            return None; // something after FTS
        }
        let was_first = first;
        first = first && line.trim().is_empty();
        match line.get(..3) {
            _ if line.trim().is_empty() => {}
            Some("FHS") if !was_first => return None,
            Some("BHS") if in_batch => return None,
            Some("FHS") | Some("BHS") => {
                in_batch |= line.starts_with("BHS");
                if line.starts_with("BHS") || header.is_none() {
                    header = hl7::Message::parse(&format!("MSH{}", &line[3..])).ok().map(|m| header_ctx(m.msh()));
                }
            }
            Some("BTS") => {
                in_batch = false;
                bts = Some(bts.unwrap_or(0) + count(line).unwrap_or(0));
            }
            Some("FTS") => {
                closed = true;
                fts = count(line);
            }
            Some("MSH") => spans.push((pos, end)),
            _ => match spans.last_mut() {
                Some(span) => span.1 = end,
                None => return None,
            },
        }
        pos = end;
    }
    if spans.is_empty() {
        return None;
    }
    let messages = spans.into_iter().map(|(a, b)| text[a..b].to_string()).collect();
    Some(Envelope { header: header.unwrap_or_default(), messages, declared: bts.or(fts) })
}

/// The batch header's sender/receiver, for the batch ACK's BHS.
fn header_ctx(h: &hl7::Segment) -> AckContext {
    let f = |n: usize| h.field(n).raw().to_string();
    AckContext {
        delimiters: *h.delimiters(),
        sending_app: f(3),
        sending_facility: f(4),
        receiving_app: f(5),
        receiving_facility: f(6),
        control_id: f(11),
        ..Default::default()
    }
}

fn commit_byte(outcomes: &[Outcome]) -> u8 {
    if outcomes.iter().any(|o| matches!(o, Outcome::Failed(_))) { 0x15 } else { 0x06 }
}

fn reply(framing: &Framing, mode: AckMode, honour: bool, ctx: &AckContext, outcomes: &[Outcome]) -> Option<Vec<u8>> {
    match mode {
        AckMode::Commit => Some(framing.wrap(&[commit_byte(outcomes)])),
        AckMode::Hl7 => ack::build(ctx, &outcomes[0], honour).map(|a| framing.wrap(a.as_bytes())),
    }
}

fn batch_reply(framing: &Framing, mode: AckMode, honour: bool, header: &AckContext, ctxs: &[AckContext], outcomes: &[Outcome], note: Option<&str>) -> Option<Vec<u8>> {
    if mode == AckMode::Commit {
        return Some(framing.wrap(&[commit_byte(outcomes)]));
    }
    let d = &header.delimiters;
    let f = d.field;
    // BHS-7 now, BHS-11 our batch control id, BHS-12 the received batch's id.
    let mut out = format!(
        "BHS{f}{}{f}{}{f}{}{f}{}{f}{}{f}{}{f}{f}{f}{f}{}{f}{}\r",
        d.encoding_characters(),
        header.receiving_app,
        header.receiving_facility,
        header.sending_app,
        header.sending_facility,
        ack::hl7_now(),
        ack::ack_control_id(),
        header.control_id
    );
    let mut n = 0;
    for (ctx, o) in ctxs.iter().zip(outcomes) {
        if let Some(a) = ack::build(ctx, o, honour) {
            out.push_str(&a);
            n += 1;
        }
    }
    match note {
        // BTS-2, the batch comment: what was wrong with the batch as a whole.
        Some(note) => out.push_str(&format!("BTS{f}{n}{f}{}\r", ack::clean(note, d))),
        None => out.push_str(&format!("BTS{f}{n}\r")),
    }
    Some(framing.wrap(out.as_bytes()))
}
