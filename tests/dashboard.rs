//! The dashboard page in a real headless Chromium against a real node: the page
//! loads with no network beyond 127.0.0.1, polls its data, draws the providers and
//! shows counters that follow the node's state; in a three-node cluster its Cluster
//! panel lists every node with its link and the cross-node traffic. Skipped
//! (passing) when Chromium is not installed.

#[path = "http/client.rs"]
mod client;
#[path = "http/harness.rs"]
mod harness;

use fixit_actors::clock::SystemClock;
use fixit_actors::ids::WalletId;
use fixit_edge::api::Request;
use fixit_edge::auth::{Principal, Role};
use fixit_edge::local_cluster::local_cluster;
use fixit_edge::server::RunningNode;
use harness::{TestNode, STOP_GRACE};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Debian's `chromium` package.
const CHROMIUM: &str = "/usr/bin/chromium";

/// Page time Chromium fast-forwards through: enough for several one-second polls.
const VIRTUAL_TIME_BUDGET_MS: u64 = 3_500;

/// Longest real time one Chromium run may take before it is killed.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(90);

/// Pause between checks whether Chromium has exited.
const EXIT_POLL: Duration = Duration::from_millis(50);

const CUSTOMER: u64 = 1_001;

/// Runs headless Chromium on `url` and returns the DOM after the time budget.
fn dump_dom(url: &str) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let output_path = profile.path().join("dom.html");
    let output = std::fs::File::create(&output_path).expect("output file");
    let mut chromium = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1280,900",
            "--run-all-compositor-stages-before-draw",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}"))
        .arg("--dump-dom")
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::from(output))
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    let started = Instant::now();
    let bound = (CHROMIUM_TIMEOUT.as_millis() / EXIT_POLL.as_millis()) as usize;
    for _ in 0..bound {
        if chromium.try_wait().expect("chromium status").is_some() {
            break;
        }
        std::thread::sleep(EXIT_POLL);
    }
    if chromium.try_wait().expect("chromium status").is_none() {
        let _ = chromium.kill();
        let _ = chromium.wait();
        panic!("chromium did not finish within {:?}", started.elapsed());
    }
    std::fs::read_to_string(&output_path).expect("dumped DOM")
}

async fn render(node: &TestNode) -> String {
    render_at(node.http.addr).await
}

async fn render_at(addr: std::net::SocketAddr) -> String {
    let url = format!("http://{addr}/");
    tokio::task::spawn_blocking(move || dump_dom(&url))
        .await
        .expect("chromium run")
}

/// The link state shown in the Cluster panel's row of node `name`.
fn node_row(dom: &str, name: &str, attribute: &str) -> String {
    let marker = format!("data-node=\"{name}\"");
    let row = dom
        .find(&marker)
        .unwrap_or_else(|| panic!("no row of node {name} in the page:\n{dom}"));
    let end = dom[row..].find('>').map_or(dom.len(), |end| row + end);
    attribute_of(&dom[row..end], attribute)
}

/// The text of the element with `id`, from a DOM dump.
fn text_of(dom: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\">");
    let start = dom
        .find(&marker)
        .unwrap_or_else(|| panic!("no #{id} in the page:\n{dom}"))
        + marker.len();
    dom[start..]
        .split('<')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The value of `attribute` on the first element that has it.
fn attribute_of(dom: &str, attribute: &str) -> String {
    let marker = format!("{attribute}=\"");
    let start = dom
        .find(&marker)
        .unwrap_or_else(|| panic!("no {attribute} in the page:\n{dom}"))
        + marker.len();
    dom[start..]
        .split('"')
        .next()
        .unwrap_or_default()
        .to_owned()
}

async fn provider_at(node: &TestNode, provider: u64, lat: f64, lon: f64) {
    let token = node.token(Role::Provider, provider);
    let online = json!({ "skills": ["plumbing"] });
    let reply = node
        .http
        .post(
            &format!("/v1/providers/{provider}/online"),
            Some(&token),
            &online,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let at = json!({ "lat": lat, "lon": lon });
    let path = format!("/v1/providers/{provider}/location");
    let reply = node.http.call("PUT", &path, Some(&token), &at).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

async fn book(node: &TestNode) -> u64 {
    let admin = node.admin();
    let top_up = json!({ "key": "top-up", "amount": 100_000 });
    let path = format!("/v1/wallets/{CUSTOMER}/deposit");
    assert_eq!(
        node.http.post(&path, Some(&admin), &top_up).await.status,
        200
    );
    let customer = node.token(Role::Customer, CUSTOMER);
    let job = json!({ "customer": CUSTOMER, "key": "job-1", "skill": "plumbing",
        "lat": 52.5201, "lon": 13.4051, "price": 5_000 });
    let reply = node.http.post("/v1/jobs", Some(&customer), &job).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["id"].as_u64().expect("job id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_providers_and_counters_that_follow_the_node() {
    if !Path::new(CHROMIUM).exists() {
        eprintln!("chromium not installed: apt-get install chromium; skipping");
        return;
    }
    let node = TestNode::start(|config| config.server.dashboard_open = true).await;
    for (provider, lat, lon) in [
        (2_001, 52.52, 13.405),
        (2_002, 52.53, 13.41),
        (2_003, 52.51, 13.39),
    ] {
        provider_at(&node, provider, lat, lon).await;
    }
    let job = book(&node).await;

    let first = render(&node).await;
    assert_eq!(text_of(&first, "node-id"), "test-node");
    assert_eq!(text_of(&first, "providers-count"), "3");
    assert_eq!(text_of(&first, "jobs-offered"), "1");
    assert_eq!(text_of(&first, "jobs-accepted"), "0");
    assert_eq!(
        attribute_of(&first, "data-points"),
        "3",
        "three providers drawn"
    );
    assert!(first.contains(&format!("data-job-id=\"{job}\"")), "{first}");
    let polls: u32 = attribute_of(&first, "data-polls")
        .parse()
        .expect("poll count");
    assert!(polls >= 2, "the page polls again ({polls} polls)");
    assert_eq!(
        attribute_of(&first, "data-cluster"),
        "no",
        "a single node says so in the Cluster panel"
    );

    for (provider, lat, lon) in [(2_004, 52.54, 13.42), (2_005, 52.50, 13.38)] {
        provider_at(&node, provider, lat, lon).await;
    }
    let offered_to = node
        .http
        .get(&format!("/v1/jobs/{job}"), Some(&node.admin()))
        .await
        .json()["status"]["Offered"]["provider"]
        .as_u64()
        .expect("offered");
    let accept = json!({ "provider": offered_to });
    let token = node.token(Role::Provider, offered_to);
    let reply = node
        .http
        .post(&format!("/v1/jobs/{job}/accept"), Some(&token), &accept)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    let second = render(&node).await;
    assert_eq!(text_of(&second, "providers-count"), "5");
    assert_eq!(attribute_of(&second, "data-points"), "5");
    assert_eq!(text_of(&second, "jobs-offered"), "0");
    assert_eq!(text_of(&second, "jobs-accepted"), "1");
    assert!(second.contains("data-status=\"accepted\""), "{second}");
    node.server.stop(STOP_GRACE).await;
}

/// A hostile skill name is refused at the door (skills are `a-z0-9_-`), so it
/// never reaches the page; the page is served with a Content-Security-Policy
/// that lets only its own inline script run (by hash) — and the page still
/// works under it in the real browser — and every answer says `nosniff`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_text_is_refused_and_the_page_runs_only_its_own_script() {
    let node = TestNode::start(|config| config.server.dashboard_open = true).await;
    let hostile = "<img src=x onerror=alert(1)>";
    let token = node.token(Role::Provider, 2_001);
    let reply = node
        .http
        .post(
            "/v1/providers/2001/online",
            Some(&token),
            &json!({ "skills": [hostile] }),
        )
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(reply.kind(), "invalid");
    assert!(!reply.text().contains("onerror=alert"), "{}", reply.text());
    let status = node
        .http
        .get("/v1/providers/2001", Some(&node.admin()))
        .await;
    assert_eq!(status.status, 404, "the refused provider was not made");

    let page = node.http.get("/", None).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    let policy = page
        .header("content-security-policy")
        .expect("a Content-Security-Policy")
        .to_owned();
    assert!(policy.starts_with("default-src 'none'"), "{policy}");
    assert!(policy.contains("script-src 'sha256-"), "{policy}");
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    let api = node.http.get("/health", None).await;
    assert_eq!(api.header("x-content-type-options"), Some("nosniff"));

    if !Path::new(CHROMIUM).exists() {
        eprintln!("chromium not installed: apt-get install chromium; skipping the render");
        node.server.stop(STOP_GRACE).await;
        return;
    }
    provider_at(&node, 2_002, 52.52, 13.405).await;
    let dom = render(&node).await;
    assert_eq!(
        text_of(&dom, "providers-count"),
        "1",
        "the page's own script ran under its policy"
    );
    assert!(!dom.contains("onerror"), "{dom}");
    node.server.stop(STOP_GRACE).await;
}

/// Tries of one forwarded call while the links come up (250 ms apart: 20 s).
const LINK_TRIES: u32 = 80;
const LINK_RETRY: Duration = Duration::from_millis(250);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_panel_lists_every_node_with_its_link_and_the_traffic() {
    if !Path::new(CHROMIUM).exists() {
        eprintln!("chromium not installed: apt-get install chromium; skipping");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let regions: BTreeMap<String, String> = [("u33d", "a"), ("u33e", "b"), ("u336", "c")]
        .into_iter()
        .map(|(prefix, node)| (prefix.to_owned(), node.to_owned()))
        .collect();
    let mut nodes = Vec::new();
    for mut config in local_cluster(dir.path(), &regions).expect("cluster configs") {
        config.server.dashboard_open = true;
        nodes.push(
            RunningNode::start(config, Arc::new(SystemClock))
                .await
                .expect("node starts"),
        );
    }
    let a = &nodes[0];
    let router = a.api().cluster().expect("in a cluster").clone();
    let admin = Principal {
        role: Role::Admin,
        sub: 0,
    };
    // One deposit through a for a wallet homed on b and one on c: forwarded over
    // each link once it is up.
    for peer in ["b", "c"] {
        let wallet = (1..1_000u64)
            .find(|id| router.home_of(WalletId(*id)) == peer)
            .expect("a wallet homed on the peer");
        let deposit = Request::Deposit {
            wallet,
            key: format!("top-up-{peer}"),
            amount: 1_000,
        };
        let mut served = false;
        for _ in 0..LINK_TRIES {
            let here = "127.0.0.1".parse().expect("address");
            if a.api()
                .handle(&admin, here, deposit.clone(), "t")
                .await
                .is_ok()
            {
                served = true;
                break;
            }
            tokio::time::sleep(LINK_RETRY).await;
        }
        assert!(served, "a forwards a deposit to {peer}");
    }

    let dom = render_at(a.http_addr()).await;
    assert_eq!(attribute_of(&dom, "data-cluster"), "yes");
    assert_eq!(node_row(&dom, "a", "data-member"), "this");
    for peer in ["b", "c"] {
        assert_eq!(node_row(&dom, peer, "data-member"), "alive", "{peer}");
        assert_eq!(node_row(&dom, peer, "data-state"), "Up", "{peer}");
    }
    let forwarded: u64 = text_of(&dom, "traffic-forwarded_out")
        .parse()
        .expect("a count");
    assert!(forwarded >= 2, "two deposits forwarded ({forwarded})");
    assert_eq!(text_of(&dom, "outbox-transfers"), "0");
    for node in nodes {
        node.shutdown().await.expect("node stops");
    }
}

/// Metres in one degree of latitude (the page's city-scale conversion).
const METRES_PER_DEGREE: f64 = 111_320.0;

/// The `city` service area: its outer ring (closed) and one hole (left open).
const CITY_OUTER: [[f64; 2]; 5] = [
    [13.36, 52.48],
    [13.46, 52.48],
    [13.46, 52.56],
    [13.36, 52.56],
    [13.36, 52.48],
];
const CITY_HOLE: [[f64; 2]; 4] = [
    [13.395, 52.495],
    [13.415, 52.495],
    [13.415, 52.505],
    [13.395, 52.505],
];

/// The `airport` zone, well south-east of every provider but one.
const AIRPORT: [[f64; 2]; 4] = [
    [13.48, 52.355],
    [13.53, 52.355],
    [13.53, 52.385],
    [13.48, 52.385],
];

const WORK_RADIUS_M: f64 = 1_500.0;

/// One entry of the page's area legend, found by its `data-area` name.
struct AreaEntry {
    /// The entry's start tag (its attributes).
    tag: String,
    /// Its text, tags left out.
    text: String,
}

impl AreaEntry {
    fn find(dom: &str, name: &str) -> AreaEntry {
        let marker = format!("data-area=\"{name}\"");
        let at = dom
            .find(&marker)
            .unwrap_or_else(|| panic!("no area {name} drawn in the page:\n{dom}"));
        let start = dom[..at].rfind('<').expect("the entry's tag");
        let tag_end = at + dom[at..].find('>').expect("the end of the entry's tag");
        let end = tag_end + dom[tag_end..].find("</li>").expect("the end of the entry");
        let mut text = String::new();
        let mut in_tag = false;
        for c in dom[tag_end + 1..end].chars() {
            match c {
                '<' => in_tag = true,
                '>' => in_tag = false,
                c if !in_tag => text.push(c),
                _ => {}
            }
        }
        AreaEntry {
            tag: dom[start..=tag_end].to_owned(),
            text,
        }
    }

    fn attribute(&self, attribute: &str) -> String {
        attribute_of(&self.tag, attribute)
    }

    /// The box the area covers on the map, CSS pixels: x0, y0, x1, y1.
    fn drawn_box(&self) -> [f64; 4] {
        let numbers: Vec<f64> = self
            .attribute("data-box")
            .split(' ')
            .map(|n| n.parse().expect("a pixel coordinate"))
            .collect();
        numbers.try_into().expect("four coordinates")
    }
}

fn ring(positions: &[[f64; 2]]) -> serde_json::Value {
    json!(positions)
}

/// A service area with a hole, a zone and a provider's circular work area, put
/// through the HTTP API, are drawn on the map (each listed in the map's legend
/// with the box it covers, inside the map), with the zone's multiplier and the
/// circle's radius at the map's scale; the new counters are shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_map_draws_service_areas_zones_and_work_areas() {
    if !Path::new(CHROMIUM).exists() {
        eprintln!("chromium not installed: apt-get install chromium; skipping");
        return;
    }
    let node = TestNode::start(|config| config.server.dashboard_open = true).await;
    let admin = node.admin();
    let city = json!({ "name": "city", "skills": [], "geometry": {
        "type": "Polygon", "coordinates": [ring(&CITY_OUTER), ring(&CITY_HOLE)] } });
    let airport = json!({ "name": "airport", "multiplier_pct": 150, "geometry": {
        "type": "Polygon", "coordinates": [ring(&AIRPORT)] } });
    for (path, area, name) in [
        ("/v1/areas/service", &city, "city"),
        ("/v1/areas/zone", &airport, "airport"),
    ] {
        let reply = node.http.call("PUT", path, Some(&admin), area).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(
            reply.json(),
            json!({ "name": name, "existed": false, "nodes_missed": [] })
        );
    }
    // One provider in the city with a work area around it; one entering the zone.
    provider_at(&node, 2_001, 52.52, 13.405).await;
    provider_at(&node, 2_002, 52.37, 13.505).await;
    let work_area = json!({ "area": { "circle": {
        "lat": 52.52, "lon": 13.405, "radius_m": WORK_RADIUS_M } } });
    let token = node.token(Role::Provider, 2_001);
    let reply = node
        .http
        .call(
            "PUT",
            "/v1/providers/2001/work-area",
            Some(&token),
            &work_area,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    // A booking in the city's hole is outside the service area.
    let customer = node.token(Role::Customer, CUSTOMER);
    let job = json!({ "customer": CUSTOMER, "key": "in-the-hole", "skill": "plumbing",
        "lat": 52.5, "lon": 13.405, "price": 5_000 });
    let reply = node.http.post("/v1/jobs", Some(&customer), &job).await;
    assert_eq!(reply.status, 422, "{}", reply.text());
    assert_eq!(reply.kind(), "outside_service_area");

    let dom = render(&node).await;
    let polls: u32 = attribute_of(&dom, "data-polls").parse().expect("polls");
    assert!(polls >= 1, "the page polled");
    assert_eq!(attribute_of(&dom, "data-service-areas"), "1");
    assert_eq!(attribute_of(&dom, "data-zones"), "1");
    assert_eq!(attribute_of(&dom, "data-work-areas"), "1");
    let size: Vec<f64> = attribute_of(&dom, "data-size")
        .split(' ')
        .map(|n| n.parse().expect("a map size"))
        .collect();
    let (width, height) = (size[0], size[1]);

    let city = AreaEntry::find(&dom, "city");
    assert_eq!(city.attribute("data-kind"), "service", "{}", city.tag);
    assert_eq!(city.attribute("data-rings"), "2", "the hole is drawn");
    assert!(city.text.contains("city"), "{}", city.text);
    let zone = AreaEntry::find(&dom, "airport");
    assert_eq!(zone.attribute("data-kind"), "zone", "{}", zone.tag);
    assert!(zone.text.contains("airport ×1.5"), "{}", zone.text);
    let work = AreaEntry::find(&dom, "provider-2001");
    assert_eq!(work.attribute("data-kind"), "work", "{}", work.tag);
    assert_eq!(work.attribute("data-shape"), "circle", "{}", work.tag);
    assert_eq!(work.attribute("data-provider"), "2001", "{}", work.tag);

    // Every area fits in the map (its bounds take in the zone, far from the city).
    for entry in [&city, &zone, &work] {
        let [x0, y0, x1, y1] = entry.drawn_box();
        assert!(
            x0 >= 0.0 && y0 >= 0.0 && x1 <= width && y1 <= height && x0 < x1 && y0 < y1,
            "{} is drawn inside the {width}×{height} map",
            entry.tag
        );
    }
    // The circle is round at the map's scale: 1,500 m against the city's 0.08° of
    // latitude, and as wide as it is high.
    let [_, city_top, _, city_bottom] = city.drawn_box();
    let [wx0, wy0, wx1, wy1] = work.drawn_box();
    let expected = 2.0 * WORK_RADIUS_M / METRES_PER_DEGREE / 0.08;
    let ratio = (wy1 - wy0) / (city_bottom - city_top);
    assert!(
        (ratio / expected - 1.0).abs() < 0.03,
        "the work area's height is {ratio} of the city's, not {expected}"
    );
    let roundness = (wx1 - wx0) / (wy1 - wy0);
    assert!(
        (roundness - 1.0).abs() < 0.03,
        "the work area is {roundness} times as wide as high"
    );
    // The zone lies south-east of the city on the map.
    let [zx0, zy0, _, _] = zone.drawn_box();
    let [_, _, cx1, cy1] = city.drawn_box();
    assert!(zx0 > cx1 && zy0 > cy1, "{} / {}", zone.tag, city.tag);

    assert_eq!(text_of(&dom, "bookings-outside-service-area"), "1");
    assert_eq!(text_of(&dom, "zone-events"), "1", "2002 entered the zone");
    for counter in [
        "offers-across-regions",
        "pushes-forwarded",
        "pushes-forward-dropped",
    ] {
        assert_eq!(text_of(&dom, counter), "0", "{counter}");
    }
    node.server.stop(STOP_GRACE).await;
}
