use patchwatch_proto::Severity;
use tokio::io::AsyncReadExt;

use super::encoder::{message, octet_counted};
use super::*;
use crate::encoding::sample_finding;
use crate::testutil::{fast_retry, quick_batch};

fn config(addr: &str, transport: &str, format: &str) -> SyslogConfig {
    let mut c: SyslogConfig = toml::from_str(&format!(
        "address = {addr:?}\ntransport = {transport:?}\nformat = {format:?}\n"
    ))
    .unwrap();
    c.batch = quick_batch(50);
    c.retry = fast_retry();
    c
}

#[test]
fn rfc5424_header_sd_and_escaping() {
    let mut f = sample_finding("f1", "EXCH-0042", Severity::Medium, "EXCH01");
    f.source_path = r#"C:\Logs\a"b].log"#.into();
    f.title = "line1\nline2".into();
    let m = rfc5424_message(&f, &config("h:1", "tcp", "rfc5424"));
    // local4 (20) * 8 + err (3) = 163.
    assert!(
        m.starts_with("<163>1 2025-11-21T05:28:01.123456Z EXCH01 patchwatch - EXCH-0042 [finding@32473 id=\"f1\" rule=\"EXCH-0042\""),
        "{m}"
    );
    assert!(m.contains(r#"file="C:\\Logs\\a\"b\].log""#), "{m}");
    assert!(m.contains(r#"sev="medium""#));
    assert!(m.contains(r#"[labels@32473 env="prod"]"#));
    assert!(m.ends_with("] line1 line2"), "{m}");
}

#[test]
fn cef_escapes_header_and_extension() {
    let mut f = sample_finding("f1", "EXCH|42", Severity::Critical, "EXCH01");
    f.title = r"a|b\c=d".into();
    f.source_path = r"C:\x=y.log".into();
    let m = cef_message(&f, &CefConfig::default());
    assert!(
        m.starts_with(&format!(
            "CEF:0|patchwatch|patchwatch|{}|EXCH\\|42|a\\|b\\\\c=d|10|rt=1763702881123 dvchost=EXCH01 ",
            env!("CARGO_PKG_VERSION")
        )),
        "{m}"
    );
    assert!(m.contains(r"filePath=C:\\x\=y.log"), "{m}");
    assert!(m.contains(r"msg=a|b\\c\=d"), "{m}");
    assert!(m.contains("cs2Label=errorCode cs2=0x80070643"), "{m}");
}

#[test]
fn octet_counting_counts_bytes_not_chars() {
    let mut out = Vec::new();
    octet_counted("é", &mut out);
    assert_eq!(out, b"2 \xc3\xa9");
}

#[test]
fn config_errors_name_the_field() {
    let mut c = config("nohostport", "tcp", "rfc5424");
    let e = build("sys", &c).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("`address`"), "{e}");
    c.address = "127.0.0.1:514".into();
    c.transport = Transport::Tls;
    let e = build("sys", &c).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("`tls`"), "{e}");
    c.tls = Some(SyslogTlsConfig {
        ca_file: Some("/nonexistent/ca.pem".into()),
        ..Default::default()
    });
    let e = build("sys", &c).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    let e = toml::from_str::<SyslogConfig>("address = \"h:1\"\ntransport = \"sctp\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("sctp"), "{e}");
}

/// Reads octet-counted frames from a stream until `n` arrived.
async fn read_frames(s: &mut tokio::net::TcpStream, n: usize) -> Vec<String> {
    let mut buf = Vec::new();
    let mut frames = Vec::new();
    while frames.len() < n {
        let mut chunk = [0u8; 4096];
        let k = s.read(&mut chunk).await.unwrap();
        assert!(k > 0, "eof after {} frames", frames.len());
        buf.extend_from_slice(&chunk[..k]);
        while let Some(sp) = buf.iter().position(|b| *b == b' ') {
            let len: usize = std::str::from_utf8(&buf[..sp]).unwrap().parse().unwrap();
            if buf.len() < sp + 1 + len {
                break;
            }
            frames.push(String::from_utf8(buf[sp + 1..sp + 1 + len].to_vec()).unwrap());
            buf.drain(..sp + 1 + len);
        }
    }
    frames
}

#[tokio::test]
async fn tcp_frames_and_reconnect_after_peer_close() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (sink, _) = build("sys", &config(&addr, "tcp", "rfc5424")).unwrap();
    let r = sink
        .send(vec![
            sample_finding("a", "R1", Severity::High, "H"),
            sample_finding("b", "R2", Severity::High, "H"),
        ])
        .await;
    let (mut s, _) = listener.accept().await.unwrap();
    let frames = read_frames(&mut s, 2).await;
    assert_eq!(r.wait().await.delivered, 2);
    assert!(frames[1].contains(r#"id="b""#));
    // The receiver goes away; the next batch must go over a new connection, not into the void.
    drop(s);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let r = sink
        .send(vec![sample_finding("c", "R3", Severity::High, "H")])
        .await;
    let (mut s2, _) = listener.accept().await.unwrap();
    let frames = read_frames(&mut s2, 1).await;
    assert_eq!(r.wait().await.delivered, 1);
    assert!(frames[0].contains(r#"id="c""#));
}

#[tokio::test]
async fn udp_one_datagram_per_message() {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap().to_string();
    let cfg = config(&addr, "udp", "cef");
    let (sink, _) = build("sys", &cfg).unwrap();
    let f = sample_finding("a", "R1", Severity::Low, "H");
    let r = sink.send(vec![f.clone()]).await.wait().await;
    assert_eq!(r.delivered, 1);
    let mut buf = [0u8; 9000];
    let n = sock.recv(&mut buf).await.unwrap();
    let got = std::str::from_utf8(&buf[..n]).unwrap();
    assert_eq!(got, message(&f, &cfg));
    assert!(got.contains(" - CEF:0|patchwatch|"), "{got}");
}
