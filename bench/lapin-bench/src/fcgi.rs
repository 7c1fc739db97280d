//! A small closed-loop FastCGI load generator: C connections in flight, each sending one request
//! on a fresh connection (as nginx does by default) and the next as soon as the answer is complete.
//! Requests that start during the warm-up are not counted.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::{Args, Res};

const BEGIN_REQUEST: u8 = 1;
const END_REQUEST: u8 = 3;
const PARAMS: u8 = 4;
const STDIN: u8 = 5;
const STDOUT: u8 = 6;
const STDERR: u8 = 7;

fn record(out: &mut Vec<u8>, kind: u8, content: &[u8]) {
    for chunk in content.chunks(65535).chain(if content.is_empty() { Some(&[][..]) } else { None }) {
        out.push(1);
        out.push(kind);
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.push(0);
        out.push(0);
        out.extend_from_slice(chunk);
    }
}

fn name_value_len(out: &mut Vec<u8>, n: usize) {
    if n < 128 {
        out.push(n as u8);
    } else {
        out.extend_from_slice(&((n as u32) | 0x8000_0000).to_be_bytes());
    }
}

/// The bytes of one complete request for `script` (GET, no body).
pub fn request(script: &str, query: &str) -> Vec<u8> {
    let uri = if query.is_empty() { "/bench".to_string() } else { format!("/bench?{query}") };
    let dir = std::path::Path::new(script).parent().and_then(|p| p.to_str()).unwrap_or("/");
    let params: Vec<(&str, &str)> = vec![
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("SERVER_SOFTWARE", "lapin-bench"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("SERVER_NAME", "localhost"),
        ("SERVER_ADDR", "127.0.0.1"),
        ("SERVER_PORT", "80"),
        ("REMOTE_ADDR", "127.0.0.1"),
        ("REMOTE_PORT", "40000"),
        ("REQUEST_METHOD", "GET"),
        ("REQUEST_URI", &uri),
        ("QUERY_STRING", query),
        ("SCRIPT_FILENAME", script),
        ("SCRIPT_NAME", "/bench"),
        ("DOCUMENT_ROOT", dir),
        ("CONTENT_LENGTH", "0"),
        ("CONTENT_TYPE", ""),
        ("HTTP_HOST", "localhost"),
    ];
    let mut p = Vec::new();
    for (k, v) in params {
        name_value_len(&mut p, k.len());
        name_value_len(&mut p, v.len());
        p.extend_from_slice(k.as_bytes());
        p.extend_from_slice(v.as_bytes());
    }
    let mut out = Vec::with_capacity(p.len() + 64);
    // Responder role, no keep-alive: FPM closes the connection after answering.
    record(&mut out, BEGIN_REQUEST, &[0, 1, 0, 0, 0, 0, 0, 0]);
    record(&mut out, PARAMS, &p);
    record(&mut out, PARAMS, &[]);
    record(&mut out, STDIN, &[]);
    out
}

pub struct Answer {
    /// When the first STDOUT record arrived (the page's output reaching the web server).
    pub first_out: Option<Instant>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub protocol_status: u8,
}

/// Sends one request on a new connection and reads the answer to its END_REQUEST record.
pub async fn exchange(socket: &str, req: &[u8]) -> Res<Answer> {
    let mut s = UnixStream::connect(socket).await.map_err(|e| format!("connect {socket}: {e}"))?;
    s.write_all(req).await.map_err(|e| format!("write: {e}"))?;
    let mut ans = Answer { first_out: None, stdout: Vec::new(), stderr: Vec::new(), protocol_status: 255 };
    let mut head = [0u8; 8];
    let mut content = vec![0u8; 65535 + 255];
    loop {
        s.read_exact(&mut head).await.map_err(|e| format!("read header: {e}"))?;
        let len = u16::from_be_bytes([head[4], head[5]]) as usize;
        let pad = head[6] as usize;
        s.read_exact(&mut content[..len + pad]).await.map_err(|e| format!("read content: {e}"))?;
        match head[1] {
            STDOUT => {
                if ans.first_out.is_none() {
                    ans.first_out = Some(Instant::now());
                }
                ans.stdout.extend_from_slice(&content[..len])
            }
            STDERR => ans.stderr.extend_from_slice(&content[..len]),
            END_REQUEST => {
                ans.protocol_status = if len >= 5 { content[4] } else { 255 };
                return Ok(ans);
            }
            _ => {}
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub async fn load(args: &Args) -> Res<()> {
    let socket = args.get("socket", "");
    let script = args.get("script", "");
    if socket.is_empty() || script.is_empty() {
        return Err("fcgi-load needs --socket PATH and --script FILE".into());
    }
    let query = args.get("query", "");
    let expect = args.get("expect", "OK");
    let concurrency: usize = args.num("concurrency", 4)?;
    let duration: f64 = args.num("duration", 3.0)?;
    let warmup: f64 = args.num("warmup", 0.5)?;
    let req = std::rc::Rc::new(request(&script, &query));

    // One check request first: a broken page is an error, not a benchmark.
    let first = exchange(&socket, &req).await?;
    if first.protocol_status != 0 || !contains(&first.stdout, expect.as_bytes()) {
        return Err(format!(
            "the page did not answer '{expect}': {}{}",
            String::from_utf8_lossy(&first.stdout),
            String::from_utf8_lossy(&first.stderr)
        ));
    }

    let t0 = Instant::now();
    let measure_from = t0 + Duration::from_secs_f64(warmup);
    let stop_at = measure_from + Duration::from_secs_f64(duration);
    let local = tokio::task::LocalSet::new();
    let results = local
        .run_until(async {
            let mut handles = Vec::new();
            for _ in 0..concurrency {
                let req = req.clone();
                let socket = socket.clone();
                let expect = expect.clone();
                handles.push(tokio::task::spawn_local(async move {
                    let mut lat = Vec::new();
                    let mut first = Vec::new();
                    let mut errors = 0u64;
                    let mut last_error = String::new();
                    loop {
                        let start = Instant::now();
                        if start >= stop_at {
                            break;
                        }
                        let r = exchange(&socket, &req).await;
                        let ms = start.elapsed().as_secs_f64() * 1000.0;
                        let ok = match &r {
                            Ok(a) => {
                                a.protocol_status == 0
                                    && contains(&a.stdout, expect.as_bytes())
                                    && !contains(&a.stdout, b"Status: 5")
                            }
                            Err(_) => false,
                        };
                        if start >= measure_from {
                            if ok {
                                lat.push(ms);
                                if let Ok(Answer { first_out: Some(f), .. }) = &r {
                                    first.push((*f - start).as_secs_f64() * 1000.0);
                                }
                            } else {
                                errors += 1;
                                last_error = match r {
                                    Ok(a) => format!(
                                        "{}{}",
                                        String::from_utf8_lossy(&a.stdout),
                                        String::from_utf8_lossy(&a.stderr)
                                    ),
                                    Err(e) => e,
                                };
                            }
                        }
                        if !ok {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                    }
                    (lat, first, errors, last_error)
                }));
            }
            let mut all = Vec::new();
            let mut firsts = Vec::new();
            let mut errors = 0u64;
            let mut last_error = String::new();
            for h in handles {
                let (l, f, e, le) = h.await.expect("load task");
                all.extend(l);
                firsts.extend(f);
                errors += e;
                if !le.is_empty() {
                    last_error = le;
                }
            }
            (all, firsts, errors, last_error)
        })
        .await;
    let (mut lat, mut first, errors, last_error) = results;
    // Requests still running at stop_at finish a little later; count over the real span.
    let span = (Instant::now() - measure_from).as_secs_f64();
    lat.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    first.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let n = lat.len();
    let mean = if n > 0 { lat.iter().sum::<f64>() / n as f64 } else { 0.0 };
    let last_error: String = last_error.chars().take(300).collect();
    println!(
        "{{\"requests\":{n},\"errors\":{errors},\"secs\":{span:.3},\"rps\":{:.1},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"mean_ms\":{mean:.3},\"first_out_p50_ms\":{:.3},\"last_error\":{}}}",
        n as f64 / span,
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        percentile(&first, 50.0),
        json_str(&last_error)
    );
    Ok(())
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}
