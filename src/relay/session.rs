//! One client connection: the SMTP server core facing the client, the message pipeline and rule
//! scan in the middle, and the SMTP client core facing the next hop. Bytes go in through the
//! two input buffers, bytes come out of the two output queues, and [`Action`]s tell the reactor
//! what only it can do (connect, start TLS, close).
//!
//! Cut-through: the route is known at MAIL for a trusted client and at the first accepted RCPT
//! otherwise; from then on MAIL/RCPT replies mirror the next hop's, message bytes stream through
//! as they arrive, and the end-of-data reply is the next hop's reply for the same message.
//! A question put to the next hop is the only thing the client waits for: the server core takes
//! no further input until it is answered, so replies stay in order.

use core::net::SocketAddr;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};

use crate::config::{Config, Disclaimer, DisclaimerScope, NextHopTls};
use crate::message::{DisclaimerOutcome, EditPlan, Footer, MessageLimits, Pipeline, SkipReason};
use crate::metrics::names::{self as metric_names, Outcome, Stage};
use crate::relay::route::{self, TenantId, Trust};
use crate::relay::stamp::{self, ReceivedInfo};
use crate::rules::{CompiledRules, Envelope, Scan};
use crate::smtp::client::{Client, ClientEvent, ClientParams, StartTlsPolicy};
use crate::smtp::command::{MailParams, Mailbox, RcptParams, ReversePath};
use crate::smtp::error::{reply_for, DownstreamFailure, SessionError};
use crate::smtp::outbound::Outbound;
use crate::smtp::reply::{EnhancedCode, Reply};
use crate::smtp::server::{Event, Server, ServerParams};

/// Most bytes held in the client input buffer; the reactor stops reading beyond it.
pub const CLIENT_BUFFER_MAX: usize = 256 * 1024;
/// Most bytes queued toward the next hop before the client stops being read (backpressure).
pub const DOWNSTREAM_HIGH_WATER: usize = 1024 * 1024;
/// Most reply bytes queued for the client before pipelined commands stop being executed; they
/// resume (from [`Session::poll_action`]) once the reactor has written the queue below it. A
/// client that pipelines without reading cannot grow the queue past this plus one pass of the
/// server core's own backlog ([`crate::smtp::server::MAX_REPLY_BACKLOG`]).
pub const CLIENT_OUTPUT_MAX: usize = 32 * 1024;
/// Most bytes held in the next-hop input buffer.
pub const DOWNSTREAM_BUFFER_MAX: usize = 64 * 1024;
/// MIME nesting the scanner walks.
pub const MAX_MIME_DEPTH: usize = 32;
/// MIME parts the scanner walks per message.
pub const MAX_MIME_PARTS: usize = 1000;

/// Configuration and rules one session runs on: a snapshot, never changed underneath it.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// The compiled rules.
    pub rules: Arc<CompiledRules>,
}

/// Facts about the connection that the reactor knows.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// The client's address (after PROXY protocol).
    pub peer: SocketAddr,
    /// Our address.
    pub local: SocketAddr,
    /// Unique per worker; used in message ids.
    pub conn_id: u64,
    /// Wall-clock time at `now` of [`Session::new`], for `Received` dates.
    pub wall_start: SystemTime,
    /// TLS is configured for the client side (STARTTLS may be offered).
    pub tls_available: bool,
}

/// What the reactor must do for the session.
#[derive(Clone, PartialEq, Debug)]
pub enum Action {
    /// Open a connection to this next hop (`host:port`), or take an idle one for the same key
    /// from the pool, then call [`Session::downstream_attached`] or
    /// [`Session::downstream_failed`].
    ConnectDownstream {
        /// The tenant whose next hop it is (the pool key).
        tenant: TenantId,
        /// `host:port`.
        next_hop: String,
    },
    /// Drop the next-hop connection (abandoned mid-message or broken); never pool it.
    CloseDownstream,
    /// Flush client output, then run the TLS handshake on the client side and call
    /// [`Session::client_tls_started`].
    StartTlsClient,
    /// Flush next-hop output, then run the TLS handshake toward the next hop and call
    /// [`Session::downstream_tls_started`].
    StartTlsDownstream,
    /// One finished message, for the log and the counters.
    Log(Box<MessageLog>),
    /// Flush client output, then close; an idle next-hop connection may go back to the pool.
    Close,
}

/// One line per message (DESIGN.md §5 / issue 5): everything an operator needs to trace it.
#[derive(Clone, PartialEq, Debug)]
pub struct MessageLog {
    /// Message id (as in `Received`).
    pub id: String,
    /// Client address.
    pub client: SocketAddr,
    /// HELO name.
    pub helo: String,
    /// TLS on the client side.
    pub tls: bool,
    /// Envelope sender.
    pub from: String,
    /// Accepted recipients.
    pub rcpts: Vec<String>,
    /// Content bytes received.
    pub size: u64,
    /// The tenant routed to.
    pub tenant: String,
    /// `YES`/`NO` when a verdict was reached.
    pub flag: Option<&'static str>,
    /// Score.
    pub score: f64,
    /// Rules hit.
    pub rules: String,
    /// The final reply sent to the client.
    pub reply: String,
    /// Time from end of data to the reply, in microseconds.
    pub eod_us: u64,
    /// Time from DATA/first BDAT to the reply, in microseconds.
    pub total_us: u64,
    /// Who or what decided: `delivered`, or one of [`crate::metrics::names::REASONS`].
    pub reason: &'static str,
    /// Whether the end of data was seen (`eod_us` is meaningful).
    pub ended: bool,
    /// The tenant's disclaimer: added or skipped (and why); `None` when the tenant has none.
    pub disclaimer: Option<DisclaimerOutcome>,
}

/// Counts of one session since the last [`Session::take_counts`], for the reactor's metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionCounts {
    /// RCPT replies to the client by class, indexed by [`Outcome::index`].
    pub rcpts: [u32; 3],
    /// Next-hop replies by [`Stage`] × class (indexed by [`Outcome::index`]).
    pub next_hop_replies: [[u32; 3]; 4],
}

impl SessionCounts {
    fn rcpt(&mut self, reply: &Reply) {
        self.rcpts[Outcome::of_code(reply.code()).index()] += 1;
    }

    fn next_hop(&mut self, stage: Stage, reply: &Reply) {
        self.next_hop_replies[stage as usize][Outcome::of_code(reply.code()).index()] += 1;
    }
}

impl std::fmt::Display for MessageLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "msg id={} client={} helo={} tls={} from=<{}> rcpts={} nrcpt={} size={} tenant={} \
             flag={} score={:.1} rules=({}) reply=\"{}\" eod_us={} total_us={} disclaimer={}",
            self.id,
            self.client,
            self.helo,
            if self.tls { "yes" } else { "no" },
            self.from,
            self.rcpts.join(","),
            self.rcpts.len(),
            self.size,
            self.tenant,
            self.flag.unwrap_or("-"),
            self.score,
            self.rules,
            self.reply.replace('"', "'"),
            self.eod_us,
            self.total_us,
            self.disclaimer_label()
        )
    }
}

impl MessageLog {
    /// The `disclaimer` log value: `yes`, `-` (the tenant has none), or why it was skipped.
    pub fn disclaimer_label(&self) -> &'static str {
        match self.disclaimer {
            None => "-",
            Some(DisclaimerOutcome::Added) => "yes",
            Some(DisclaimerOutcome::Skipped(why)) => why.as_str(),
        }
    }
}

/// The server question waiting for the next hop's answer (at most one at a time).
#[derive(Debug)]
enum Pending {
    None,
    /// A RCPT; `with_mail` when MAIL was sent together with it (first RCPT of an untrusted
    /// client) and its reply comes first.
    Rcpt {
        to: Mailbox,
        params: RcptParams,
        sent: bool,
        mail_failed: Option<Reply>,
    },
    /// End of message, waiting for the next hop's final reply.
    DataEnd,
}

/// The downstream connection's protocol state (its socket lives in the reactor).
#[derive(Debug)]
enum Link {
    /// No connection.
    None,
    /// Asked the reactor for one.
    Connecting(TenantId),
    /// Connected; `ready` once greeting/EHLO/STARTTLS are done.
    Up {
        tenant: TenantId,
        client: Box<Client>,
        ready: bool,
    },
}

#[derive(Debug)]
struct Txn {
    from: ReversePath,
    params: MailParams,
    route: Option<TenantId>,
    mail_sent: bool,
    /// The next hop refused MAIL (sent ahead of RCPT); every RCPT hears it.
    mail_failed: Option<Reply>,
    rcpts: Vec<Mailbox>,
    /// The next hop broke during the transaction: every later question gets this.
    broken: Option<SessionError>,
    data: Option<DataState>,
    /// The next hop has answered something in this transaction.
    answered: bool,
    /// The transaction was moved to a fresh connection once already.
    retried: bool,
}

#[derive(Debug)]
struct DataState {
    pipeline: Pipeline,
    scan: Scan,
    /// The next hop takes content now (354 seen, or BDAT).
    downstream_ready: bool,
    /// Content released by the pipeline before the next hop was ready.
    queued: VecDeque<Bytes>,
    queued_len: usize,
    /// The message was refused; content is discarded until its end.
    failed: bool,
    size: u64,
    started: Instant,
    ended: Option<Instant>,
    end_sent: bool,
    verdict_flag: Option<&'static str>,
    /// The tenant's disclaimer was decided against before release (`None`: armed or none).
    disclaimer_skip: Option<SkipReason>,
}

/// One client connection.
#[derive(Debug)]
pub struct Session {
    snap: Snapshot,
    info: ConnInfo,
    start: Instant,
    server: Server,
    trust: Trust,
    tls_active: bool,
    tls_description: Option<String>,
    client_in: BytesMut,
    client_out: Vec<u8>,
    down_in: BytesMut,
    down_out: Outbound,
    link: Link,
    pending: Pending,
    txn: Option<Txn>,
    actions: VecDeque<Action>,
    msg_seq: u32,
    closing: bool,
    /// The last `now` seen, for resuming held-back input from [`Session::poll_action`].
    last_now: Instant,
    /// Pipelined commands wait in `client_in` because `client_out` is over
    /// [`CLIENT_OUTPUT_MAX`].
    input_held: bool,
    /// Since when the client is not read because the next hop takes no bytes, and how many
    /// bytes the next hop had taken then.
    write_stall: Option<(Instant, u64)>,
    /// The next-hop connection carried an earlier transaction (or came from the pool).
    link_reused: bool,
    /// Counts not yet taken by the reactor.
    counts: SessionCounts,
    /// Disclaimer footers prepared for this snapshot, by tenant index (built on first use).
    footers: Vec<Option<Arc<Footer>>>,
}

impl Session {
    /// A new session; the greeting is queued.
    pub fn new(snap: Snapshot, info: ConnInfo, now: Instant) -> Session {
        let trust = route::trust_for(&snap.config, info.peer.ip(), &[]);
        let server = Server::new(server_params(&snap.config, info.tls_available), now);
        let mut session = Session {
            snap,
            info,
            start: now,
            server,
            trust,
            tls_active: false,
            tls_description: None,
            client_in: BytesMut::with_capacity(4096),
            client_out: Vec::with_capacity(1024),
            down_in: BytesMut::new(),
            down_out: Outbound::new(),
            link: Link::None,
            pending: Pending::None,
            txn: None,
            actions: VecDeque::new(),
            msg_seq: 0,
            closing: false,
            last_now: now,
            input_held: false,
            write_stall: None,
            link_reused: false,
            counts: SessionCounts::default(),
            footers: Vec::new(),
        };
        // The greeting is queued in the server core: move it out now.
        session.pump(now);
        session
    }

    /// A session refused at connect time (connection limits, shutdown): the client hears
    /// `reply_for(err)` instead of the greeting (RFC 5321 §3.1), then the connection closes.
    pub fn new_refused(snap: Snapshot, info: ConnInfo, now: Instant, err: SessionError) -> Session {
        let mut session = Session::new(snap, info, now);
        session.client_out.clear();
        session.refuse(err);
        session
    }

    /// Refuses the session at once (shutdown): queues `reply_for(err)` and closes after it.
    pub fn refuse(&mut self, err: SessionError) {
        self.server.refuse_session(err);
        self.pump(self.start);
    }

    /// The buffer the reactor reads client plaintext into.
    pub fn client_buffer(&mut self) -> &mut BytesMut {
        &mut self.client_in
    }

    /// How many more client bytes may be read now (0: stop reading — backpressure).
    pub fn client_read_room(&self) -> usize {
        if self.closing || self.downstream_backed_up() {
            return 0;
        }
        if let Some(d) = self.txn.as_ref().and_then(|t| t.data.as_ref()) {
            if d.queued_len >= DOWNSTREAM_HIGH_WATER {
                return 0;
            }
        }
        CLIENT_BUFFER_MAX.saturating_sub(self.client_in.len())
    }

    /// New client bytes are in [`Session::client_buffer`].
    pub fn handle_client_data(&mut self, now: Instant) {
        self.pump(now);
    }

    /// The client closed its side.
    pub fn handle_client_eof(&mut self, now: Instant) {
        self.server.handle_eof();
        self.closing = true;
        self.pump(now);
        self.abandon_downstream_txn();
        self.actions.push_back(Action::Close);
    }

    /// The buffer the reactor reads next-hop plaintext into.
    pub fn downstream_buffer(&mut self) -> &mut BytesMut {
        &mut self.down_in
    }

    /// How many more next-hop bytes may be read now.
    pub fn downstream_read_room(&self) -> usize {
        DOWNSTREAM_BUFFER_MAX.saturating_sub(self.down_in.len())
    }

    /// New next-hop bytes are in [`Session::downstream_buffer`].
    pub fn handle_downstream_data(&mut self, now: Instant) {
        match &mut self.link {
            Link::Up { client, .. } => client.handle_input(now, &mut self.down_in),
            // Read from a connection this session already let go (the reactor closes it
            // after this turn): they must not reach the next connection's client core.
            Link::None | Link::Connecting(_) => self.down_in.clear(),
        }
        self.pump(now);
    }

    /// The next hop closed the connection.
    pub fn handle_downstream_eof(&mut self, now: Instant) {
        if let Link::Up { client, .. } = &mut self.link {
            client.handle_eof();
        }
        self.pump(now);
        if matches!(self.link, Link::Up { .. }) {
            self.downstream_failed(now, "connection closed by next hop".to_string());
        }
    }

    /// The reactor has a connection to the next hop: a fresh one (`None`: the session starts
    /// the SMTP dialogue) or an idle pooled one whose client core is ready.
    pub fn downstream_attached(&mut self, now: Instant, pooled: Option<Box<Client>>) {
        let Link::Connecting(tenant) = self.link else {
            return;
        };
        self.link_reused = pooled.is_some();
        // A new connection starts with nothing read from it.
        self.down_in.clear();
        let (client, ready) = match pooled {
            Some(mut c) => {
                // Its reply deadlines count from the last time it saw the clock.
                c.handle_timeout(now);
                (c, true)
            }
            None => (
                Box::new(Client::new(self.client_params(tenant), now)),
                false,
            ),
        };
        self.link = Link::Up {
            tenant,
            client,
            ready,
        };
        self.advance_downstream();
        self.pump(now);
    }

    /// The next-hop connection failed (connect, TLS, I/O). Whatever waits on it gets a `4xx`.
    pub fn downstream_failed(&mut self, now: Instant, why: String) {
        let failure = match &self.link {
            Link::Connecting(_) => DownstreamFailure::Connect(why),
            _ => DownstreamFailure::Dropped(why),
        };
        self.link_failed(now, failure);
    }

    fn link_failed(&mut self, now: Instant, failure: DownstreamFailure) {
        self.write_stall = None;
        if !matches!(self.link, Link::None) {
            // The client core may have given up by itself (a reply timeout): the socket must
            // go too, or its late bytes or close would be taken for the next transaction's.
            self.actions.push_back(Action::CloseDownstream);
        }
        self.link = Link::None;
        self.down_out.clear();
        self.down_in.clear();
        if let Some(tenant) = self.retry_on_fresh_link() {
            self.ensure_link(tenant);
        } else {
            self.break_txn(now, SessionError::Downstream(failure));
        }
        self.pump(now);
    }

    /// A connection that carried an earlier transaction (or sat in the pool) may have been
    /// closed by the next hop just as this one started on it (idle timeouts, a limit of
    /// messages per connection). If the next hop has said nothing about this transaction
    /// yet and no content was sent, nothing can have been delivered: the envelope goes again
    /// on a fresh connection, once, and the client never sees the failure.
    fn retry_on_fresh_link(&mut self) -> Option<TenantId> {
        let reused = std::mem::replace(&mut self.link_reused, false);
        let txn = self.txn.as_mut()?;
        let fresh_start = !txn.answered && txn.rcpts.is_empty() && txn.data.is_none();
        if !reused || txn.retried || !fresh_start || txn.broken.is_some() {
            return None;
        }
        let tenant = txn.route?;
        txn.retried = true;
        txn.mail_sent = false;
        txn.mail_failed = None;
        if let Pending::Rcpt {
            sent, mail_failed, ..
        } = &mut self.pending
        {
            *sent = false;
            *mail_failed = None;
        }
        Some(tenant)
    }

    /// The TLS handshake with the client finished.
    pub fn client_tls_started(&mut self, now: Instant) {
        self.tls_active = true;
        self.client_in.clear();
        self.server.tls_started();
        self.pump(now);
    }

    /// The TLS handshake toward the next hop finished.
    pub fn downstream_tls_started(&mut self, now: Instant) {
        self.down_in.clear();
        if let Link::Up { client, .. } = &mut self.link {
            client.tls_started();
        }
        self.pump(now);
    }

    /// The client side's TLS version and cipher (`TLSv1.3:TLS13_AES_256_GCM_SHA384`), for
    /// `Received`.
    pub fn set_tls_description(&mut self, description: Option<String>) {
        self.tls_description = description;
    }

    /// A verified client certificate's names (after the TLS handshake): may make the client
    /// trusted for a tenant (`trusted_cert_names`).
    pub fn set_client_cert_names(&mut self, names: &[String]) {
        if self.trust == Trust::Untrusted {
            self.trust = route::trust_for(&self.snap.config, self.info.peer.ip(), names);
        }
    }

    /// Reply bytes for the client.
    pub fn client_output(&mut self) -> &mut Vec<u8> {
        &mut self.client_out
    }

    /// Bytes for the next hop.
    pub fn downstream_output(&mut self) -> &mut Outbound {
        &mut self.down_out
    }

    /// The next action for the reactor. The reactor calls this on every turn for the
    /// connection, so it is also where pipelined commands held back behind unwritten replies
    /// (over [`CLIENT_OUTPUT_MAX`]) resume once the reactor has written them: no new client
    /// bytes need to arrive for that.
    pub fn poll_action(&mut self) -> Option<Action> {
        if self.actions.is_empty() && self.input_held && self.client_out.len() <= CLIENT_OUTPUT_MAX
        {
            self.pump(self.last_now);
        }
        self.actions.pop_front()
    }

    /// When [`Session::handle_timeout`] must be called next.
    pub fn next_deadline(&self) -> Option<Instant> {
        let server = self.server.next_deadline();
        let down = match &self.link {
            Link::Up { client, .. } => client.next_deadline(),
            _ => None,
        };
        let stall = self
            .write_stall
            .map(|(since, _)| since + self.next_hop_timeout());
        [server, down, stall].into_iter().flatten().min()
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.track_write_stall(now);
        if let Some((since, _)) = self.write_stall {
            if now >= since + self.next_hop_timeout() {
                // The next hop has taken no bytes for next_hop_timeout_s while we hold the
                // client back for it: the message cannot go on.
                self.link_failed(now, DownstreamFailure::Timeout);
            }
        }
        self.server.handle_timeout(now);
        if let Link::Up { client, .. } = &mut self.link {
            client.handle_timeout(now);
        }
        self.pump(now);
    }

    /// Whether the session is over (the reactor closes after flushing).
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// Takes the next-hop connection's client core if it is idle and reusable (for the pool),
    /// with its tenant.
    pub fn take_idle_downstream(&mut self) -> Option<(TenantId, Box<Client>)> {
        if self.txn.is_some() || !self.down_out.is_empty() {
            return None;
        }
        match std::mem::replace(&mut self.link, Link::None) {
            Link::Up {
                tenant,
                client,
                ready: true,
            } if client.is_idle() => Some((tenant, client)),
            other => {
                self.link = other;
                None
            }
        }
    }

    /// Whether a transaction is in flight: a question waits on the next hop, message content
    /// is streaming, or the client has pipelined commands not yet executed. A graceful stop
    /// waits for these; a client idle in the middle of an envelope hears `421` at once
    /// (nothing was accepted yet, it tries again later) rather than holding the stop up.
    pub fn in_transaction(&self) -> bool {
        let Some(txn) = self.txn.as_ref() else {
            return !matches!(self.pending, Pending::None);
        };
        !matches!(self.pending, Pending::None) || txn.data.is_some() || !self.client_in.is_empty()
    }

    /// The counts since the last call, when there are any (cheap when there are none).
    pub fn take_counts(&mut self) -> Option<SessionCounts> {
        if self.counts == SessionCounts::default() {
            return None;
        }
        Some(std::mem::take(&mut self.counts))
    }

    /// Whether a next-hop connection exists (or is being made).
    pub fn has_downstream(&self) -> bool {
        !matches!(self.link, Link::None)
    }

    // ----- the engine -----

    /// Runs both protocol cores until neither makes progress.
    fn pump(&mut self, now: Instant) {
        self.last_now = now;
        loop {
            let mut progress = false;
            if let Link::Up { client, .. } = &mut self.link {
                client.poll_output(&mut self.down_out);
                if let Some(ev) = client.poll_event() {
                    self.on_downstream(now, ev);
                    progress = true;
                }
            }
            while let Some(ev) = self.server.poll_event() {
                self.on_client(now, ev);
                progress = true;
            }
            let may_read = !self.server.is_waiting() && !self.client_in.is_empty() && !self.closing;
            if may_read && self.client_out.len() <= CLIENT_OUTPUT_MAX {
                let before = self.client_in.len();
                self.server.handle_input(now, &mut self.client_in);
                progress |= self.client_in.len() != before;
            }
            if !progress {
                break;
            }
            // Move replies out as they come: the server core stops reading at its own reply
            // backlog, and a pipelining client must not stall on it; CLIENT_OUTPUT_MAX bounds
            // the queue instead.
            self.move_replies();
        }
        self.move_replies();
        if let Link::Up { client, .. } = &mut self.link {
            client.poll_output(&mut self.down_out);
        }
        self.track_write_stall(now);
        self.input_held = !self.server.is_waiting()
            && !self.client_in.is_empty()
            && !self.closing
            && self.client_out.len() > CLIENT_OUTPUT_MAX;
        if self.server.is_closing() && !self.closing {
            self.closing = true;
            self.abandon_downstream_txn();
            self.actions.push_back(Action::Close);
        }
    }

    /// Whether the next hop's unwritten bytes are over [`DOWNSTREAM_HIGH_WATER`] (the client
    /// is not read meanwhile).
    fn downstream_backed_up(&self) -> bool {
        let buffered = match &self.link {
            Link::Up { client, .. } => client.buffered_bytes(),
            _ => 0,
        };
        self.down_out.len() + buffered >= DOWNSTREAM_HIGH_WATER
    }

    /// Starts, restarts or ends the next-hop write-stall clock: it runs while the next hop
    /// is backed up and restarts whenever it has taken bytes since last checked.
    fn track_write_stall(&mut self, now: Instant) {
        if !matches!(self.link, Link::Up { .. }) || !self.downstream_backed_up() {
            self.write_stall = None;
            return;
        }
        let written = self.down_out.written();
        match self.write_stall {
            Some((_, mark)) if mark == written => {}
            _ => self.write_stall = Some((now, written)),
        }
    }

    fn next_hop_timeout(&self) -> Duration {
        Duration::from_secs(self.snap.config.limits.next_hop_timeout_s)
    }

    /// Moves the server core's replies to the client queue, unless they are held.
    fn move_replies(&mut self) {
        // RFC 2920 §3.1: while a question waits on the next hop and the client has pipelined
        // more commands, earlier replies may wait too; they then leave in one write.
        let hold = self.server.is_waiting() && !self.client_in.is_empty() && !self.closing;
        if !hold {
            self.server.poll_output(&mut self.client_out);
        }
    }

    fn on_client(&mut self, now: Instant, ev: Event) {
        match ev {
            Event::Helo { .. } => {}
            Event::Mail { from, params } => self.on_mail(from, params),
            Event::Rcpt { to, params } => self.on_rcpt(to, params),
            Event::DataStart { bdat } => self.on_data_start(now, bdat),
            Event::Data(piece) => self.on_data(now, piece),
            Event::DataEnd => self.on_data_end(now),
            Event::Abort => {
                if let Some(err) = self.server.take_own_refusal() {
                    // The server core refused the message itself (size, bare LF): it answers
                    // at the end; the message is logged and counted here, while it is known.
                    let live = self
                        .txn
                        .as_ref()
                        .and_then(|t| t.data.as_ref())
                        .is_some_and(|d| !d.failed);
                    if live {
                        let reply = reply_for(&err).0;
                        self.log_message(now, &reply, metric_names::reason_of(&err));
                    }
                }
                self.abandon_downstream_txn();
                self.pending = Pending::None;
            }
            Event::StartTls => self.actions.push_back(Action::StartTlsClient),
            Event::Close => {}
        }
    }

    fn on_mail(&mut self, from: ReversePath, params: MailParams) {
        let route = match self.trust {
            Trust::Trusted(t) => Some(t),
            Trust::Untrusted => None,
        };
        self.txn = Some(Txn {
            from,
            params,
            route,
            mail_sent: false,
            mail_failed: None,
            rcpts: Vec::new(),
            broken: None,
            data: None,
            answered: false,
            retried: false,
        });
        // A trusted client's route is known now: open the next hop and send MAIL at once. The
        // client is not kept waiting for the next hop's MAIL reply (a round trip per message);
        // a refusal there is mirrored at the first RCPT. Otherwise the route comes with the
        // first recipient.
        if let Some(tenant) = route {
            self.ensure_link(tenant);
            self.advance_downstream();
        }
        self.server.answer(ok_reply(250, (2, 1, 0), "Sender OK"));
    }

    fn on_rcpt(&mut self, to: Mailbox, params: RcptParams) {
        let Some(txn) = self.txn.as_mut() else {
            let reply = reply_for(&SessionError::BadSequence("need MAIL first")).0;
            self.counts.rcpt(&reply);
            self.server.answer(reply);
            return;
        };
        if let Some(err) = &txn.broken {
            let reply = reply_for(err).0;
            self.counts.rcpt(&reply);
            self.server.answer(reply);
            return;
        }
        if let Some(mail_reply) = txn.mail_failed.clone() {
            let err = SessionError::Downstream(DownstreamFailure::Replied(mail_reply));
            let reply = reply_for(&err).0;
            self.counts.rcpt(&reply);
            self.server.answer(reply);
            return;
        }
        match route::route_rcpt(&self.snap.config, self.trust, txn.route, &to) {
            // Relay probing counts toward max_errors; another route's recipient is legitimate.
            Err(err @ SessionError::RelayDenied) => {
                self.counts.rcpt(&reply_for(&err).0);
                self.server.refuse_question(&err)
            }
            Err(err) => {
                let reply = reply_for(&err).0;
                self.counts.rcpt(&reply);
                self.server.answer(reply)
            }
            Ok(tenant) => {
                txn.route = Some(tenant);
                self.pending = Pending::Rcpt {
                    to,
                    params,
                    sent: false,
                    mail_failed: None,
                };
                self.ensure_link(tenant);
                self.advance_downstream();
            }
        }
    }

    fn on_data_start(&mut self, now: Instant, bdat: bool) {
        let limits = &self.snap.config.limits;
        let data = DataState {
            pipeline: Pipeline::new(MessageLimits {
                max_header_bytes: limits.max_header_bytes,
                scan_window: limits.scan_window,
                max_mime_depth: MAX_MIME_DEPTH,
                max_mime_parts: MAX_MIME_PARTS,
            }),
            scan: Scan::new(self.snap.rules.clone()),
            downstream_ready: false,
            queued: VecDeque::new(),
            queued_len: 0,
            failed: false,
            size: 0,
            started: now,
            ended: None,
            end_sent: false,
            verdict_flag: None,
            disclaimer_skip: None,
        };
        let Some(txn) = self.txn.as_mut() else {
            let err = SessionError::BadSequence("need MAIL first");
            self.fail_or_answer(now, !bdat, err);
            return;
        };
        let mut data = data;
        data.scan.set_envelope(&Envelope {
            helo: self.server.helo().unwrap_or("").to_string(),
            client_ip: self.info.peer.ip(),
            mail_from: txn.from.to_string(),
            rcpts: txn.rcpts.iter().map(|r| r.to_string()).collect(),
        });
        if let Some(err) = txn.broken.clone() {
            self.fail_or_answer(now, !bdat, err);
            return;
        }
        if let Ok(Some(_)) = disclaimer_applies(&self.snap.config, self.trust, txn) {
            data.pipeline.track_parts();
        }
        txn.data = Some(data);
        self.msg_seq += 1;
        match &mut self.link {
            Link::Up { client, .. } => {
                client.data();
                if !bdat {
                    // The client hears 354 at once and starts sending while the next hop's
                    // 354 is on its way (one round trip fewer per message): content waits
                    // in `queued`, bounded by DOWNSTREAM_HIGH_WATER, and a refusal of DATA
                    // there refuses the message at its end (fail_message), so nothing is
                    // accepted that the next hop did not accept.
                    self.server
                        .answer(ok_reply(354, (2, 0, 0), "End data with <CR><LF>.<CR><LF>"));
                }
            }
            _ => {
                let err = SessionError::Downstream(DownstreamFailure::Dropped(
                    "no connection to next hop".into(),
                ));
                self.fail_or_answer(now, !bdat, err);
            }
        }
    }

    fn on_data(&mut self, now: Instant, piece: Bytes) {
        let Some(data) = self.txn.as_mut().and_then(|t| t.data.as_mut()) else {
            return;
        };
        if data.failed {
            return;
        }
        data.size += piece.len() as u64;
        if data.pipeline.feed(piece, &mut data.scan).is_err() {
            self.fail_message(now, SessionError::HeaderTooBig);
            return;
        }
        self.after_feed(now);
    }

    fn on_data_end(&mut self, now: Instant) {
        let Some(data) = self.txn.as_mut().and_then(|t| t.data.as_mut()) else {
            // The server only asks at end of data for a transaction it saw start.
            self.server
                .answer(reply_for(&SessionError::Local("no transaction")).0);
            return;
        };
        data.ended = Some(now);
        if data.failed {
            // The server answers a failed message itself (fail_message).
            return;
        }
        if data.pipeline.finish(&mut data.scan).is_err() {
            self.fail_message(now, SessionError::HeaderTooBig);
            return;
        }
        // Size rules and metas over them need the final size.
        data.scan.finish(data.size);
        self.after_feed(now);
        let Some(data) = self.txn.as_mut().and_then(|t| t.data.as_mut()) else {
            return;
        };
        if data.failed {
            return;
        }
        // A reject rule can still match after the scan window: the next hop never sees the
        // end of this message (headers could not change any more; DESIGN.md §2).
        if let Some(text) = data.scan.verdict().reject {
            self.fail_message(now, SessionError::RejectedByRule(text));
            return;
        }
        if matches!(self.link, Link::Up { .. }) {
            self.pending = Pending::DataEnd;
            self.flush_content();
        } else {
            let why = "no connection to next hop".to_string();
            self.fail_message(
                now,
                SessionError::Downstream(DownstreamFailure::Dropped(why)),
            );
        }
    }

    /// After content was fed: take the verdict once the window is complete, and move released
    /// output toward the next hop.
    fn after_feed(&mut self, now: Instant) {
        let Some(txn) = self.txn.as_mut() else {
            return;
        };
        let Some(data) = txn.data.as_ref() else {
            return;
        };
        if !data.pipeline.is_released() && data.pipeline.window_complete() {
            let stamp = Stamp {
                trust: self.trust,
                tls: self.tls_active,
                tls_description: self.tls_description.as_deref(),
                helo: self.server.helo().unwrap_or("unknown"),
                esmtp: self.server.is_extended(),
                id: message_id(self.info.conn_id, self.msg_seq),
                peer: self.info.peer,
                when: self.info.wall_start + now.saturating_duration_since(self.start),
            };
            if let Err(err) = decide(&self.snap, &stamp, txn, &mut self.footers) {
                self.fail_message(now, err);
                return;
            }
            if !self.snap.rules.can_reject() {
                // The headers are written: past the window only a reject rule could still
                // matter, and there is none, so the rest passes through unscanned.
                if let Some(data) = txn.data.as_mut() {
                    data.pipeline.stop_scanning();
                }
            }
        }
        self.flush_content();
    }

    fn flush_content(&mut self) {
        let Some(data) = self.txn.as_mut().and_then(|t| t.data.as_mut()) else {
            return;
        };
        while let Some(piece) = data.pipeline.poll_output() {
            data.queued_len += piece.len();
            data.queued.push_back(piece);
        }
        if !data.downstream_ready {
            return;
        }
        if let Link::Up { client, .. } = &mut self.link {
            while let Some(piece) = data.queued.pop_front() {
                data.queued_len -= piece.len();
                client.send(piece);
            }
            if data.ended.is_some() && !data.end_sent && matches!(self.pending, Pending::DataEnd) {
                data.end_sent = true;
                client.end();
            }
        }
    }

    fn on_downstream(&mut self, now: Instant, ev: ClientEvent) {
        let _ = now;
        match ev {
            ClientEvent::Ready => {
                if let Link::Up { ready, .. } = &mut self.link {
                    *ready = true;
                }
                self.advance_downstream();
            }
            ClientEvent::StartTls => self.actions.push_back(Action::StartTlsDownstream),
            ClientEvent::MailReply(reply) => self.on_mail_reply(reply),
            ClientEvent::RcptReply(reply) => self.on_rcpt_reply(reply),
            ClientEvent::DataReady => {
                if let Some(data) = self.txn.as_mut().and_then(|t| t.data.as_mut()) {
                    data.downstream_ready = true;
                }
                self.flush_content();
            }
            ClientEvent::DataRefused(reply) => {
                self.counts.next_hop(Stage::Data, &reply);
                let err = SessionError::Downstream(DownstreamFailure::Replied(reply));
                self.fail_message(now, err);
                self.rset_downstream();
            }
            ClientEvent::MessageReply(reply) => self.on_message_reply(now, reply),
            ClientEvent::ResetDone => {}
            ClientEvent::Failed(why) => self.downstream_failed(now, why),
        }
    }

    fn on_mail_reply(&mut self, reply: Reply) {
        self.counts.next_hop(Stage::Mail, &reply);
        if let Some(txn) = self.txn.as_mut() {
            txn.answered = true;
        }
        if reply.is_positive() {
            return;
        }
        match &mut self.pending {
            Pending::Rcpt { mail_failed, .. } => *mail_failed = Some(reply),
            // MAIL was sent ahead of any RCPT (trusted client): the next RCPT hears it.
            _ => {
                if let Some(txn) = self.txn.as_mut() {
                    txn.mail_failed = Some(reply);
                }
            }
        }
    }

    fn on_rcpt_reply(&mut self, reply: Reply) {
        self.counts.next_hop(Stage::Rcpt, &reply);
        if let Some(txn) = self.txn.as_mut() {
            txn.answered = true;
        }
        let Pending::Rcpt {
            to, mail_failed, ..
        } = std::mem::replace(&mut self.pending, Pending::None)
        else {
            return;
        };
        if let Some(mail_reply) = mail_failed {
            // The next hop refused the sender: the transaction there is gone; the route is
            // chosen again with the next recipient.
            let err = SessionError::Downstream(DownstreamFailure::Replied(mail_reply));
            let reply = reply_for(&err).0;
            self.counts.rcpt(&reply);
            self.server.answer(reply);
            if let Some(txn) = self.txn.as_mut() {
                txn.mail_sent = false;
                if txn.rcpts.is_empty() && self.trust == Trust::Untrusted {
                    txn.route = None;
                }
            }
            self.rset_downstream();
            return;
        }
        if reply.is_positive() {
            if let Some(txn) = self.txn.as_mut() {
                txn.rcpts.push(to);
            }
            self.counts.rcpt(&reply);
            self.server.answer(reply);
        } else {
            let err = SessionError::Downstream(DownstreamFailure::Replied(reply));
            let reply = reply_for(&err).0;
            self.counts.rcpt(&reply);
            self.server.answer(reply);
        }
    }

    fn on_message_reply(&mut self, now: Instant, reply: Reply) {
        self.counts.next_hop(Stage::Message, &reply);
        if !matches!(self.pending, Pending::DataEnd) {
            // An early failing BDAT chunk: the message is refused now.
            self.fail_message(
                now,
                SessionError::Downstream(DownstreamFailure::Replied(reply)),
            );
            return;
        }
        self.pending = Pending::None;
        self.link_reused = true;
        let (to_client, reason) = if reply.is_positive() {
            (reply, "delivered")
        } else {
            let err = SessionError::Downstream(DownstreamFailure::Replied(reply));
            (reply_for(&err).0, metric_names::reason_of(&err))
        };
        self.log_message(now, &to_client, reason);
        self.server.answer(to_client);
        if let Some(txn) = self.txn.as_mut() {
            txn.data = None;
        }
        // The server core starts a new transaction phase after the final reply.
        self.txn = None;
    }

    /// Issues whatever the pending question needs from the next hop, once it is ready.
    fn advance_downstream(&mut self) {
        let Link::Up {
            client,
            ready: true,
            ..
        } = &mut self.link
        else {
            return;
        };
        let Some(txn) = self.txn.as_mut() else {
            return;
        };
        // RFC 6531 §3.4: a non-ASCII address must not reach a server without SMTPUTF8; the
        // refusal is ours, mirrored like the next hop's own would be.
        let utf8_ok = client.capabilities().smtputf8;
        let refusal = || reply_for(&SessionError::NextHopLacksSmtpUtf8).0;
        if txn.route.is_some() && !txn.mail_sent && txn.mail_failed.is_none() {
            if !utf8_ok && !txn.from.is_ascii() {
                txn.mail_failed = Some(refusal());
            } else {
                client.mail(&txn.from, &txn.params);
                txn.mail_sent = true;
            }
        }
        let refuse_rcpt = match &mut self.pending {
            Pending::Rcpt {
                to, params, sent, ..
            } if !*sent => {
                if txn.mail_failed.is_some() || (!utf8_ok && !to.is_ascii()) {
                    true
                } else {
                    client.rcpt(to, params);
                    *sent = true;
                    false
                }
            }
            _ => false,
        };
        if refuse_rcpt {
            self.pending = Pending::None;
            let reply = txn.mail_failed.clone().unwrap_or_else(refusal);
            self.counts.rcpt(&reply);
            if txn.rcpts.is_empty() && self.trust == Trust::Untrusted && !txn.mail_sent {
                // Nothing went to this next hop: the next recipient chooses the route again.
                txn.route = None;
                txn.mail_failed = None;
            }
            self.server.answer(reply);
        }
    }

    fn ensure_link(&mut self, tenant: TenantId) {
        match &self.link {
            Link::Up { tenant: t, .. } | Link::Connecting(t) if *t == tenant => {}
            Link::None => {
                self.link = Link::Connecting(tenant);
                let next_hop = route::tenant(&self.snap.config, tenant).next_hop.clone();
                self.actions
                    .push_back(Action::ConnectDownstream { tenant, next_hop });
            }
            _ => {
                // Connected to another tenant's next hop (an earlier transaction): replace it.
                self.actions.push_back(Action::CloseDownstream);
                self.link = Link::Connecting(tenant);
                self.down_out.clear();
                self.down_in.clear();
                let next_hop = route::tenant(&self.snap.config, tenant).next_hop.clone();
                self.actions
                    .push_back(Action::ConnectDownstream { tenant, next_hop });
            }
        }
    }

    /// The transaction is abandoned by the client: the next hop must not deliver anything.
    fn abandon_downstream_txn(&mut self) {
        let in_data = self.txn.as_ref().is_some_and(|t| t.data.is_some());
        let had_txn = self.txn.take().is_some_and(|t| t.mail_sent);
        if in_data {
            // Mid-message there is no way back but to drop the connection.
            self.close_downstream();
        } else if had_txn {
            self.rset_downstream();
        }
    }

    fn rset_downstream(&mut self) {
        self.link_reused = true;
        if let Link::Up { client, .. } = &mut self.link {
            client.rset();
        }
    }

    fn close_downstream(&mut self) {
        if !matches!(self.link, Link::None) {
            self.link = Link::None;
            self.down_out.clear();
            self.down_in.clear();
            self.actions.push_back(Action::CloseDownstream);
        }
    }

    /// The next hop broke: answer what waits on it and poison the transaction.
    fn break_txn(&mut self, now: Instant, err: SessionError) {
        match std::mem::replace(&mut self.pending, Pending::None) {
            Pending::Rcpt { .. } => {
                self.counts.rcpt(&reply_for(&err).0);
                self.server.answer(reply_for(&err).0);
                if let Some(txn) = self.txn.as_mut() {
                    txn.data = None;
                }
            }
            Pending::DataEnd => {
                self.pending = Pending::DataEnd;
                self.fail_message(now, err.clone());
            }
            Pending::None => {
                let in_data = self
                    .txn
                    .as_ref()
                    .and_then(|t| t.data.as_ref())
                    .is_some_and(|d| !d.failed);
                if in_data {
                    self.fail_message(now, err.clone());
                }
            }
        }
        if let Some(txn) = self.txn.as_mut() {
            txn.broken = Some(err);
        }
    }

    /// Refuses the current message: the rest of its data is discarded by the server core,
    /// which answers with `reply_for(err)` (at once if the end of data is already waiting for
    /// an answer); the next hop loses the transaction.
    fn fail_message(&mut self, now: Instant, err: SessionError) {
        if let Some(data) = self.txn.as_mut().and_then(|t| t.data.as_mut()) {
            if data.failed {
                return;
            }
            data.failed = true;
            data.queued.clear();
            data.queued_len = 0;
        }
        let (reply, _) = reply_for(&err);
        self.log_message(now, &reply, metric_names::reason_of(&err));
        self.pending = Pending::None;
        self.server.fail_message(err);
        self.close_downstream();
        // The server core finishes the message on its own; the transaction is over here.
        self.txn = None;
    }

    fn fail_or_answer(&mut self, now: Instant, answer: bool, err: SessionError) {
        if answer {
            self.server.answer(reply_for(&err).0);
        } else {
            self.fail_message(now, err);
        }
    }

    fn client_params(&self, tenant: TenantId) -> ClientParams {
        let t = route::tenant(&self.snap.config, tenant);
        let starttls = match t.next_hop_tls {
            NextHopTls::None => StartTlsPolicy::Never,
            NextHopTls::Opportunistic => StartTlsPolicy::IfOffered,
            NextHopTls::Require | NextHopTls::Verify => StartTlsPolicy::Required,
        };
        ClientParams {
            helo_name: self.snap.config.server.hostname.clone(),
            starttls,
            reply_timeout: self.next_hop_timeout(),
            use_bdat: true,
        }
    }

    fn log_message(&mut self, now: Instant, reply: &Reply, reason: &'static str) {
        let Some(txn) = self.txn.as_ref() else {
            return;
        };
        let Some(data) = txn.data.as_ref() else {
            return;
        };
        let verdict = data.scan.verdict();
        let log = MessageLog {
            id: message_id(self.info.conn_id, self.msg_seq),
            client: self.info.peer,
            helo: self.server.helo().unwrap_or("").to_string(),
            tls: self.tls_active,
            from: txn.from.to_string(),
            rcpts: txn.rcpts.iter().map(|r| r.to_string()).collect(),
            size: data.size,
            tenant: txn
                .route
                .map(|t| route::tenant(&self.snap.config, t).name.clone())
                .unwrap_or_default(),
            flag: data.verdict_flag,
            score: verdict.score,
            rules: data.scan.hit_names(),
            reply: reply.to_string(),
            eod_us: data
                .ended
                .map(|e| now.saturating_duration_since(e).as_micros() as u64)
                .unwrap_or(0),
            total_us: now.saturating_duration_since(data.started).as_micros() as u64,
            reason,
            ended: data.ended.is_some(),
            disclaimer: data
                .disclaimer_skip
                .map(DisclaimerOutcome::Skipped)
                .or_else(|| data.pipeline.disclaimer_outcome()),
        };
        self.actions.push_back(Action::Log(Box::new(log)));
    }
}

/// What the relay's own header fields say about a message.
struct Stamp<'a> {
    trust: Trust,
    tls: bool,
    tls_description: Option<&'a str>,
    helo: &'a str,
    esmtp: bool,
    id: String,
    peer: SocketAddr,
    when: SystemTime,
}

/// Takes the verdict for a message whose header block and scan window are complete, builds
/// the edit plan and releases the held bytes. Errors refuse the message.
fn decide(
    snap: &Snapshot,
    st: &Stamp<'_>,
    txn: &mut Txn,
    footers: &mut Vec<Option<Arc<Footer>>>,
) -> Result<(), SessionError> {
    let config = &snap.config;
    let Some(data) = txn.data.as_mut() else {
        return Ok(());
    };
    let Some(tenant_id) = txn.route else {
        return Err(SessionError::Local("message without a route"));
    };
    let tenant = route::tenant(config, tenant_id);
    let loop_field = tenant.loop_header();
    let pipeline = &data.pipeline;
    if pipeline.count_fields("Received") > config.limits.max_hops {
        return Err(SessionError::TooManyHops);
    }
    let mut plan = EditPlan {
        prepend: Vec::with_capacity(512),
        remove: vec![
            stamp::FLAG_HEADER.to_string(),
            stamp::SCORE_HEADER.to_string(),
        ],
    };
    if pipeline.count_fields(&loop_field) > 0 {
        match st.trust {
            // Our own header on mail from the tenant's own servers: Exchange sent it back to
            // us, so its transport rule is missing or wrong.
            Trust::Trusted(_) => return Err(SessionError::RoutingLoop),
            // Anyone else could forge it to skip filtering on the way back: drop it.
            Trust::Untrusted => plan.remove.push(loop_field.clone()),
        }
    }
    let verdict = data.scan.verdict();
    if let Some(text) = verdict.reject {
        return Err(SessionError::RejectedByRule(text));
    }
    let single = (txn.rcpts.len() == 1).then(|| txn.rcpts[0].to_string());
    stamp::received(
        &mut plan.prepend,
        &ReceivedInfo {
            helo: st.helo,
            ip: st.peer.ip(),
            by: &config.server.hostname,
            esmtp: st.esmtp,
            tls: st.tls,
            tls_description: st.tls_description,
            id: &st.id,
            single_rcpt: single.as_deref(),
            when: st.when,
        },
    );
    stamp::loop_header(&mut plan.prepend, &loop_field);
    stamp::verdict(
        &mut plan.prepend,
        verdict.spam,
        verdict.score,
        &data.scan.hit_names(),
    );
    data.verdict_flag = Some(if verdict.spam { "YES" } else { "NO" });
    let skip = match disclaimer_applies(config, st.trust, txn) {
        Ok(Some(d)) => {
            let data = txn.data.as_mut().ok_or(SessionError::Local("no data"))?;
            let hit = d
                .skip_rules
                .iter()
                .any(|r| data.scan.hit_names().split(',').any(|h| h == r.as_str()));
            let footer = footer_for(footers, tenant_id.0, d);
            let boundary = format!("=_conbool_disclaimer_{}_=", st.id);
            if hit {
                Some(SkipReason::SkipRule)
            } else {
                let name = &tenant.name;
                data.pipeline
                    .arm_disclaimer(&footer, name, &boundary, &mut plan)
                    .err()
            }
        }
        Ok(None) => None,
        Err(why) => Some(why),
    };
    let Some(data) = txn.data.as_mut() else {
        return Ok(());
    };
    data.disclaimer_skip = skip;
    data.pipeline.release(&plan);
    Ok(())
}

/// The tenant's disclaimer if this message may get it (`Ok(None)`: the tenant has none):
/// `applies_to` (outbound: from the tenant's trusted clients), never for a null sender.
fn disclaimer_applies<'c>(
    config: &'c Config,
    trust: Trust,
    txn: &Txn,
) -> Result<Option<&'c Disclaimer>, SkipReason> {
    let Some(tenant_id) = txn.route else {
        return Ok(None);
    };
    let Some(d) = route::tenant(config, tenant_id).disclaimer.as_ref() else {
        return Ok(None);
    };
    let covered = match d.applies_to {
        DisclaimerScope::Outbound => trust == Trust::Trusted(tenant_id),
        DisclaimerScope::All => true,
    };
    if !covered {
        return Err(SkipReason::NotCovered);
    }
    if matches!(txn.from, ReversePath::Null) {
        return Err(SkipReason::NullSender);
    }
    Ok(Some(d))
}

/// The prepared footer of tenant `index`, built on first use.
fn footer_for(footers: &mut Vec<Option<Arc<Footer>>>, index: usize, d: &Disclaimer) -> Arc<Footer> {
    if footers.len() <= index {
        footers.resize(index + 1, None);
    }
    Arc::clone(footers[index].get_or_insert_with(|| Arc::new(Footer::new(&d.text, &d.html))))
}

/// A queue-less message id: connection id and message sequence, in hex.
pub fn message_id(conn_id: u64, seq: u32) -> String {
    format!("{conn_id:X}.{seq}")
}

fn ok_reply(code: u16, (c, s, d): (u8, u16, u16), text: &str) -> Reply {
    Reply::new(code, Some(EnhancedCode::new(c, s, d)), text)
}

fn server_params(config: &Config, tls_available: bool) -> ServerParams {
    let l = &config.limits;
    ServerParams {
        hostname: config.server.hostname.clone(),
        max_message_size: l.max_message_size,
        max_recipients: l.max_recipients,
        max_errors: l.max_errors,
        bare_lf: l.bare_lf,
        command_timeout: Duration::from_secs(l.command_timeout_s),
        data_timeout: Duration::from_secs(l.data_timeout_s),
        starttls: tls_available,
        tls_required: config.tls.as_ref().is_some_and(|t| t.require),
        binarymime: false,
    }
}
