//! Reference clients for bench/run.
//!
//!   lapin-bench publish-each N        [--exchange E] [--routing-key K] [--size B]
//!   lapin-bench publish-pipelined N   [--exchange E] [--routing-key K] [--size B] [--batch B]
//!   lapin-bench consume N PREFETCH    --queue Q [--t0 UNIX_SECONDS]
//!   lapin-bench fill N                [--exchange E] [--routing-key K] [--size B]
//!   lapin-bench two-hop N PREFETCH    --queue A --to B [--t0 UNIX_SECONDS]
//!                                     consume A, publish each to B confirmed, ack it on the confirm;
//!                                     the rate is taken at a sink consuming B (its own connection)
//!   lapin-bench fcgi-load             --socket PATH --script FILE [--concurrency C] [--duration S]
//!                                     [--warmup S] [--expect TEXT]
//!
//! The broker URL comes from --url or AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/%2f).
//! Every command prints one JSON object on stdout.

mod fcgi;

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};

type Res<T> = Result<T, String>;

struct Args {
    positional: Vec<String>,
    named: HashMap<String, String>,
}

impl Args {
    fn parse() -> Args {
        let mut positional = Vec::new();
        let mut named = HashMap::new();
        let mut it = std::env::args().skip(1);
        while let Some(a) = it.next() {
            if let Some(name) = a.strip_prefix("--") {
                if let Some((k, v)) = name.split_once('=') {
                    named.insert(k.to_string(), v.to_string());
                } else {
                    named.insert(name.to_string(), it.next().unwrap_or_default());
                }
            } else {
                positional.push(a);
            }
        }
        Args { positional, named }
    }

    fn pos<T: std::str::FromStr>(&self, i: usize, what: &str) -> Res<T> {
        self.positional
            .get(i)
            .ok_or_else(|| format!("missing argument: {what}"))?
            .parse()
            .map_err(|_| format!("bad {what}: {}", self.positional[i]))
    }

    fn get(&self, name: &str, default: &str) -> String {
        self.named.get(name).cloned().unwrap_or_else(|| default.to_string())
    }

    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> Res<T> {
        match self.named.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("bad --{name}: {v}")),
        }
    }
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

fn url(args: &Args) -> String {
    args.named
        .get("url")
        .cloned()
        .or_else(|| std::env::var("AMQP_URL").ok())
        .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".to_string())
}

async fn connect(args: &Args) -> Res<Connection> {
    let props =
        ConnectionProperties::default().with_connection_name(format!("lapin-bench pid {}", std::process::id()).into());
    Connection::connect(&url(args), props).await.map_err(|e| format!("connect: {e}"))
}

/// A JSON-looking body of exactly `size` bytes.
fn body(size: usize) -> Vec<u8> {
    let head = br#"{"bench":"lapin","pad":""#;
    let tail = br#""}"#;
    let mut b = Vec::with_capacity(size.max(head.len() + tail.len()));
    b.extend_from_slice(head);
    while b.len() + tail.len() < size {
        b.push(b'x');
    }
    b.extend_from_slice(tail);
    b
}

struct Publisher {
    ch: Channel,
    exchange: String,
    routing_key: String,
    body: Vec<u8>,
    props: BasicProperties,
}

impl Publisher {
    async fn new(conn: &Connection, args: &Args) -> Res<Publisher> {
        let ch = conn.create_channel().await.map_err(|e| format!("channel: {e}"))?;
        ch.confirm_select(ConfirmSelectOptions::default()).await.map_err(|e| format!("confirm.select: {e}"))?;
        Ok(Publisher {
            ch,
            exchange: args.get("exchange", ""),
            routing_key: args.get("routing-key", ""),
            body: body(args.num("size", 200usize)?),
            props: BasicProperties::default().with_content_type("application/json".into()).with_delivery_mode(2),
        })
    }

    async fn send(&self) -> Res<lapin::PublisherConfirm> {
        self.ch
            .basic_publish(
                self.exchange.as_str().into(),
                self.routing_key.as_str().into(),
                BasicPublishOptions { mandatory: true, immediate: false },
                &self.body,
                self.props.clone(),
            )
            .await
            .map_err(|e| format!("publish: {e}"))
    }
}

async fn settle(c: lapin::PublisherConfirm) -> Res<()> {
    match c.await.map_err(|e| format!("confirm: {e}"))? {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(_)) => Err("message returned unroutable".into()),
        Confirmation::Nack(_) => Err("message nacked".into()),
        Confirmation::NotRequested => Err("confirms not enabled".into()),
    }
}

fn report(n: u64, secs: f64, extra: &str) {
    let rate = if secs > 0.0 { n as f64 / secs } else { 0.0 };
    println!("{{\"n\":{n},\"secs\":{secs:.6},\"rate\":{rate:.1}{extra}}}");
}

async fn publish(args: &Args, pipelined: bool) -> Res<()> {
    let n: u64 = args.pos(1, "N")?;
    let conn = connect(args).await?;
    let p = Publisher::new(&conn, args).await?;
    // One confirmed message first, so connection set-up is not timed.
    settle(p.send().await?).await?;
    let start = Instant::now();
    if pipelined {
        // --batch B: await the confirms of every B messages (default: all N in flight at once).
        let batch = args.num("batch", n)?.max(1);
        let mut confirms = Vec::with_capacity(batch.min(n) as usize);
        let mut sent = 0;
        while sent < n {
            let k = batch.min(n - sent);
            for _ in 0..k {
                confirms.push(p.send().await?);
            }
            for c in confirms.drain(..) {
                settle(c).await?;
            }
            sent += k;
        }
    } else {
        for _ in 0..n {
            settle(p.send().await?).await?;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let _ = conn.close(200, "done".into()).await;
    report(n, secs, &format!(",\"per_msg_us\":{:.1}", secs * 1e6 / n as f64));
    Ok(())
}

async fn consume(args: &Args) -> Res<()> {
    let n: u64 = args.pos(1, "N")?;
    let prefetch: u16 = args.pos(2, "PREFETCH")?;
    let queue = args.get("queue", "");
    let t0: Option<f64> = args.named.get("t0").and_then(|v| v.parse().ok());
    let conn = connect(args).await?;
    let ch = conn.create_channel().await.map_err(|e| format!("channel: {e}"))?;
    ch.basic_qos(prefetch, BasicQosOptions::default()).await.map_err(|e| format!("basic.qos: {e}"))?;
    let start = Instant::now();
    let mut consumer = ch
        .basic_consume(
            queue.as_str().into(),
            "lapin-bench".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("basic.consume: {e}"))?;
    let mut seen = 0u64;
    let mut acks = tokio::task::JoinSet::new();
    while seen < n {
        let d = match tokio::time::timeout(Duration::from_secs(30), consumer.next()).await {
            Err(_) => return Err(format!("no delivery for 30 s after {seen} of {n}")),
            Ok(None) => return Err("consumer closed".into()),
            Ok(Some(Err(e))) => return Err(format!("delivery: {e}")),
            Ok(Some(Ok(d))) => d,
        };
        seen += 1;
        // Pipelined: the ack is sent without waiting for the previous one to be written.
        let acker = d.acker;
        acks.spawn(async move { acker.ack(BasicAckOptions::default()).await });
        while acks.try_join_next().is_some() {}
    }
    let end_unix = unix_now();
    let secs = match t0 {
        Some(t0) => end_unix - t0,
        None => start.elapsed().as_secs_f64(),
    };
    while acks.join_next().await.is_some() {}
    let _ = conn.close(200, "done".into()).await;
    report(n, secs, &format!(",\"end\":{end_unix:.6}"));
    Ok(())
}

/// Consumes `queue` until `n` deliveries, acking each without waiting for the previous ack's write;
/// the unix time of the n-th.
async fn sink(conn: Connection, queue: String, n: u64, prefetch: u16) -> Res<f64> {
    let ch = conn.create_channel().await.map_err(|e| format!("sink channel: {e}"))?;
    ch.basic_qos(prefetch, BasicQosOptions::default()).await.map_err(|e| format!("sink basic.qos: {e}"))?;
    let mut consumer = ch
        .basic_consume(queue.as_str().into(), "lapin-bench-sink".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .map_err(|e| format!("sink basic.consume: {e}"))?;
    let mut acks = tokio::task::JoinSet::new();
    for seen in 0..n {
        let d = match tokio::time::timeout(Duration::from_secs(30), consumer.next()).await {
            Err(_) => return Err(format!("sink: no delivery for 30 s after {seen} of {n}")),
            Ok(None) => return Err("sink consumer closed".into()),
            Ok(Some(Err(e))) => return Err(format!("sink delivery: {e}")),
            Ok(Some(Ok(d))) => d,
        };
        let acker = d.acker;
        acks.spawn(async move { acker.ack(BasicAckOptions::default()).await });
        while acks.try_join_next().is_some() {}
    }
    let end = unix_now();
    while acks.join_next().await.is_some() {}
    let _ = conn.close(200, "done".into()).await;
    Ok(end)
}

/// The raw two-hop a Scheduler does: consume A (prefetch PREFETCH), publish each message to B
/// (persistent, mandatory, confirmed), ack it once its confirm came; all in flight up to the prefetch.
async fn two_hop(args: &Args) -> Res<()> {
    let n: u64 = args.pos(1, "N")?;
    let prefetch: u16 = args.pos(2, "PREFETCH")?;
    let (from, to) = (args.get("queue", ""), args.get("to", ""));
    let t0: Option<f64> = args.named.get("t0").and_then(|v| v.parse().ok());
    let start = Instant::now();
    let sink = tokio::spawn(sink(connect(args).await?, to.clone(), n, 100));
    let conn = connect(args).await?;
    let ch = conn.create_channel().await.map_err(|e| format!("channel: {e}"))?;
    ch.confirm_select(ConfirmSelectOptions::default()).await.map_err(|e| format!("confirm.select: {e}"))?;
    ch.basic_qos(prefetch, BasicQosOptions::default()).await.map_err(|e| format!("basic.qos: {e}"))?;
    let mut consumer = ch
        .basic_consume(from.as_str().into(), "lapin-bench-hop".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .map_err(|e| format!("basic.consume: {e}"))?;
    let props = BasicProperties::default().with_content_type("application/json".into()).with_delivery_mode(2);
    let mut settled = tokio::task::JoinSet::new();
    for seen in 0..n {
        let d = match tokio::time::timeout(Duration::from_secs(30), consumer.next()).await {
            Err(_) => return Err(format!("no delivery for 30 s after {seen} of {n}")),
            Ok(None) => return Err("consumer closed".into()),
            Ok(Some(Err(e))) => return Err(format!("delivery: {e}")),
            Ok(Some(Ok(d))) => d,
        };
        let confirm = ch
            .basic_publish(
                "".into(),
                to.as_str().into(),
                BasicPublishOptions { mandatory: true, immediate: false },
                &d.data,
                props.clone(),
            )
            .await
            .map_err(|e| format!("publish: {e}"))?;
        let acker = d.acker;
        settled.spawn(async move {
            settle(confirm).await?;
            acker.ack(BasicAckOptions::default()).await.map_err(|e| format!("ack: {e}"))
        });
        while let Some(r) = settled.try_join_next() {
            r.map_err(|e| format!("join: {e}"))??;
        }
    }
    while let Some(r) = settled.join_next().await {
        r.map_err(|e| format!("join: {e}"))??;
    }
    let end_unix = sink.await.map_err(|e| format!("join: {e}"))??;
    let secs = match t0 {
        Some(t0) => end_unix - t0,
        None => start.elapsed().as_secs_f64(),
    };
    let _ = conn.close(200, "done".into()).await;
    report(n, secs, &format!(",\"end\":{end_unix:.6}"));
    Ok(())
}

fn main() {
    let args = Args::parse();
    let cmd = args.positional.first().cloned().unwrap_or_default();
    let threads: usize = args.num("threads", 1).unwrap_or(1);
    let rt = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()
    }
    .expect("tokio runtime");
    let r = rt.block_on(async {
        match cmd.as_str() {
            "publish-each" => publish(&args, false).await,
            "publish-pipelined" | "fill" => publish(&args, true).await,
            "consume" => consume(&args).await,
            "two-hop" => two_hop(&args).await,
            "fcgi-load" => fcgi::load(&args).await,
            _ => Err(format!("unknown command '{cmd}': publish-each, publish-pipelined, fill, consume, two-hop, fcgi-load")),
        }
    });
    if let Err(e) = r {
        eprintln!("lapin-bench {cmd}: {e}");
        std::process::exit(1);
    }
}
