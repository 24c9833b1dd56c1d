//! A real browser for the portal's tests: headless Chromium driven through chromedriver
//! (WebDriver, with fantoccini), one of each per test.
//!
//! - [`Browser::start`]: `/usr/bin/chromedriver` on a free port of its own and a Chromium session
//!   with a fresh profile directory. Dropping the browser ends the session, stops chromedriver
//!   and removes the profile; [`Browser::close`] does the same and reports errors.
//! - Helpers that wait for what they need instead of sleeping: [`Browser::find`],
//!   [`Browser::click`], [`Browser::type_into`], [`Browser::wait_for_path`],
//!   [`Browser::click_and_wait_for_page`], …
//! - [`Browser::screenshot`]: a numbered PNG of the page into the browser's screenshot directory.
//! - [`Browser::qr_uri`]: the otpauth URI, decoded from the pixels of `img#qr`.
//! - [`totp_code`]: a code from an otpauth URI by the independent implementation
//!   (`tests/py/totp.py`).
//!
//! Chromium is `/usr/bin/chromium` and chromedriver `/usr/bin/chromedriver` (Debian's `chromium`
//! and `chromium-driver`), or `GATEHOUSE_TEST_CHROMIUM` and `GATEHOUSE_TEST_CHROMEDRIVER`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use fantoccini::elements::Element;
pub use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use tokio::process::{Child, Command};
use uuid::Uuid;

use crate::eventually;

/// How long a page, an element or a condition may take to appear.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub fn chromium() -> String {
    std::env::var("GATEHOUSE_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned())
}

pub fn chromedriver() -> String {
    std::env::var("GATEHOUSE_TEST_CHROMEDRIVER")
        .unwrap_or_else(|_| "/usr/bin/chromedriver".to_owned())
}

/// A headless Chromium session through a chromedriver of its own.
pub struct Browser {
    pub client: Client,
    driver: Child,
    driver_port: u16,
    session: Option<String>,
    profile: PathBuf,
    screenshots: PathBuf,
    shots: AtomicUsize,
}

impl Browser {
    /// Starts chromedriver and a Chromium session; screenshots go to `screenshots` (emptied
    /// first, so a second run does not mix with the first).
    pub async fn start(screenshots: impl Into<PathBuf>) -> Browser {
        Self::try_start(screenshots.into())
            .await
            .expect("chromedriver and Chromium start (apt-get install chromium chromium-driver)")
    }

    async fn try_start(screenshots: PathBuf) -> anyhow::Result<Browser> {
        let _ = std::fs::remove_dir_all(&screenshots);
        std::fs::create_dir_all(&screenshots)
            .with_context(|| format!("creating {}", screenshots.display()))?;
        let profile =
            std::env::temp_dir().join(format!("gatehouse-chromium-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&profile).context("creating the Chromium profile directory")?;

        let port = crate::smtp::free_port();
        let log = std::fs::File::create(screenshots.join("chromedriver.log"))
            .context("creating chromedriver's log")?;
        let mut driver = Command::new(chromedriver())
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            // A group of its own: whatever it starts can be stopped with it.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", chromedriver()))?;

        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(status) = driver.try_wait().context("watching chromedriver")? {
                bail!("chromedriver exited at start ({status}); is port {port} taken?");
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                bail!("chromedriver did not listen on port {port} within {PATIENCE:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let client = match connect(port, &profile).await {
            Ok(client) => client,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&profile);
                return Err(e);
            }
        };
        let mut browser = Browser {
            client,
            driver,
            driver_port: port,
            session: None,
            profile,
            screenshots,
            shots: AtomicUsize::new(0),
        };
        browser.session = browser.client.session_id().await?;
        Ok(browser)
    }

    /// Ends the session and stops chromedriver, reporting a failure to end the session.
    pub async fn close(mut self) -> anyhow::Result<()> {
        self.session = None;
        self.client.clone().close().await?;
        Ok(())
    }

    /// The screenshot directory.
    pub fn screenshots(&self) -> &Path {
        &self.screenshots
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("opening {url}: {e}"));
    }

    /// The current URL.
    pub async fn url(&self) -> String {
        self.client
            .current_url()
            .await
            .expect("the current URL")
            .to_string()
    }

    /// The current URL's path.
    pub async fn path(&self) -> String {
        self.client
            .current_url()
            .await
            .expect("the current URL")
            .path()
            .to_owned()
    }

    /// Waits until the current URL's path is `path`.
    pub async fn wait_for_path(&self, path: &str) {
        eventually(PATIENCE, &format!("the page {path}"), || async {
            let current = self.client.current_url().await.ok()?;
            (current.path() == path).then_some(())
        })
        .await;
    }

    /// Waits for the element that `css` selects.
    pub async fn find(&self, css: &str) -> Element {
        match self
            .client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(e) => {
                let saved = self.save_page("missing").await;
                panic!(
                    "no element '{css}' on {} within {PATIENCE:?}: {e} (the page: {})",
                    self.url().await,
                    saved.display()
                )
            }
        }
    }

    /// Every element `css` selects right now (the page is loaded; nothing is awaited).
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        self.client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("looking for '{css}': {e}"))
    }

    /// Whether `css` selects anything right now.
    pub async fn exists(&self, css: &str) -> bool {
        !self.find_all(css).await.is_empty()
    }

    /// The visible text of `css`.
    pub async fn text(&self, css: &str) -> String {
        self.find(css)
            .await
            .text()
            .await
            .unwrap_or_else(|e| panic!("the text of '{css}': {e}"))
    }

    /// The visible text of the whole page.
    pub async fn page_text(&self) -> String {
        self.text("body").await
    }

    /// An attribute of `css`.
    pub async fn attr(&self, css: &str, name: &str) -> Option<String> {
        self.find(css)
            .await
            .attr(name)
            .await
            .unwrap_or_else(|e| panic!("the attribute {name} of '{css}': {e}"))
    }

    /// Whether `css` is enabled.
    pub async fn is_enabled(&self, css: &str) -> bool {
        self.find(css)
            .await
            .is_enabled()
            .await
            .unwrap_or_else(|e| panic!("whether '{css}' is enabled: {e}"))
    }

    /// Whether `css` is displayed.
    pub async fn is_displayed(&self, css: &str) -> bool {
        self.find(css)
            .await
            .is_displayed()
            .await
            .unwrap_or_else(|e| panic!("whether '{css}' is displayed: {e}"))
    }

    /// Whether the checkbox (or radio button) `css` is checked.
    pub async fn is_checked(&self, css: &str) -> bool {
        self.find(css)
            .await
            .is_selected()
            .await
            .unwrap_or_else(|e| panic!("whether '{css}' is checked: {e}"))
    }

    /// Waits until `css` is displayed (e.g. a menu or a dialog that a click opens).
    pub async fn wait_until_displayed(&self, css: &str) -> Element {
        let element = self.find(css).await;
        eventually(PATIENCE, &format!("'{css}' to be displayed"), || async {
            element.is_displayed().await.ok()?.then_some(())
        })
        .await;
        element
    }

    /// Waits until `css` is enabled (e.g. a button the page activates).
    pub async fn wait_until_enabled(&self, css: &str) -> Element {
        let element = self.find(css).await;
        eventually(PATIENCE, &format!("'{css}' to be enabled"), || async {
            element.is_enabled().await.ok()?.then_some(())
        })
        .await;
        element
    }

    /// Clicks `css` once it is there and displayed.
    pub async fn click(&self, css: &str) {
        let element = self.wait_until_displayed(css).await;
        element
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking '{css}': {e}"));
    }

    /// Clicks `css` and waits until the browser has left the page it was on (a form posted, a
    /// link followed) and the next one has loaded.
    pub async fn click_and_wait_for_page(&self, css: &str) {
        let old = self
            .client
            .find(Locator::Css("html"))
            .await
            .expect("the page's root");
        self.click(css).await;
        self.wait_for_new_page(old, css).await;
    }

    /// Clicks the link whose text is `text` and waits for the page it opens.
    pub async fn follow_link(&self, text: &str) {
        self.follow(Locator::LinkText(text), text).await;
    }

    /// Clicks the first link of a `<nav>` (the page's navigation) whose text is `text` and
    /// waits for the page it opens.
    pub async fn follow_nav_link(&self, text: &str) {
        let xpath = format!("(//nav//a[normalize-space()='{text}'])[1]");
        self.follow(Locator::XPath(&xpath), text).await;
    }

    async fn follow(&self, link: Locator<'_>, what: &str) {
        let old = self
            .client
            .find(Locator::Css("html"))
            .await
            .expect("the page's root");
        let element = match self.client.wait().at_most(PATIENCE).for_element(link).await {
            Ok(element) => element,
            Err(e) => {
                let saved = self.save_page("missing").await;
                panic!(
                    "no link '{what}' on {} within {PATIENCE:?}: {e} (the page: {})",
                    self.url().await,
                    saved.display()
                )
            }
        };
        element
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking the link '{what}': {e}"));
        self.wait_for_new_page(old, what).await;
    }

    async fn wait_for_new_page(&self, old: Element, what: &str) {
        eventually(PATIENCE, &format!("the page after '{what}'"), || async {
            match old.tag_name().await {
                Err(e) if e.is_stale_element_reference() || e.is_no_such_element() => Some(()),
                _ => None,
            }
        })
        .await;
        eventually(PATIENCE, "the page to load", || async {
            let state = self
                .client
                .execute("return document.readyState", vec![])
                .await
                .ok()?;
            (state == json!("complete")).then_some(())
        })
        .await;
    }

    /// Types `text` into the input `css`, as keystrokes.
    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.wait_until_displayed(css).await;
        element
            .click()
            .await
            .unwrap_or_else(|e| panic!("focusing '{css}': {e}"));
        element
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("typing into '{css}': {e}"));
    }

    /// Presses `keys` (text or [`Key`]s) where the keyboard focus is, as a person at the
    /// keyboard would.
    pub async fn press(&self, keys: &str) {
        let focused = self
            .client
            .active_element()
            .await
            .unwrap_or_else(|e| panic!("the focused element: {e}"));
        focused
            .send_keys(keys)
            .await
            .unwrap_or_else(|e| panic!("pressing {keys:?}: {e}"));
    }

    /// Whether the keyboard focus is on the element `css` selects.
    pub async fn has_focus(&self, css: &str) -> bool {
        let script = "var e = document.querySelector(arguments[0]); \
                      return e !== null && e === document.activeElement;";
        self.client
            .execute(script, vec![json!(css)])
            .await
            .unwrap_or_else(|e| panic!("whether '{css}' has the focus: {e}"))
            == json!(true)
    }

    /// Presses Tab until the focus reaches `css`, failing if 60 presses do not get there
    /// (the element cannot be reached by keyboard).
    pub async fn tab_to(&self, css: &str) {
        for _ in 0..60 {
            if self.has_focus(css).await {
                return;
            }
            self.press(&Key::Tab).await;
        }
        let saved = self.save_page("unreachable").await;
        panic!(
            "'{css}' on {} cannot be reached with Tab (the page: {})",
            self.url().await,
            saved.display()
        );
    }

    /// Presses `keys` and waits until the browser has left the page it was on and the next
    /// one has loaded.
    pub async fn press_and_wait_for_page(&self, keys: &str) {
        let old = self
            .client
            .find(Locator::Css("html"))
            .await
            .expect("the page's root");
        self.press(keys).await;
        self.wait_for_new_page(old, keys).await;
    }

    /// Resizes the window (e.g. to a phone's 390×844).
    pub async fn resize(&self, width: u32, height: u32) {
        self.client
            .set_window_size(width, height)
            .await
            .unwrap_or_else(|e| panic!("resizing the window to {width}x{height}: {e}"));
    }

    /// How many CSS pixels the page is wider than the window (0 when nothing scrolls sideways).
    pub async fn sideways_overflow(&self) -> i64 {
        let script = "return document.documentElement.scrollWidth \
                      - document.documentElement.clientWidth;";
        self.client
            .execute(script, vec![])
            .await
            .expect("the page's width")
            .as_i64()
            .expect("a width in pixels")
    }

    /// Saves a PNG of the page as `<nn>-<name>.png` in the screenshot directory (numbered in
    /// the order taken); answers its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self
            .client
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("a screenshot of '{name}': {e}"));
        let path = self.next_file(name, "png");
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path
    }

    /// Saves what the page shows and its HTML (`<nn>-<name>.png`, `<nn>-<name>.html`), for a
    /// failure's report; answers the HTML's path. Errors are ignored: this runs while failing.
    pub async fn save_page(&self, name: &str) -> PathBuf {
        let html = self.next_file(name, "html");
        if let Ok(source) = self.client.source().await {
            let _ = std::fs::write(&html, source);
        }
        if let Ok(png) = self.client.screenshot().await {
            let _ = std::fs::write(html.with_extension("png"), png);
        }
        html
    }

    fn next_file(&self, name: &str, extension: &str) -> PathBuf {
        let n = self.shots.fetch_add(1, Ordering::SeqCst) + 1;
        self.screenshots.join(format!("{n:02}-{name}.{extension}"))
    }

    /// The otpauth URI in the QR code `img#qr` shows, decoded from its pixels.
    pub async fn qr_uri(&self) -> String {
        let src = self.attr("img#qr", "src").await.expect("img#qr has a src");
        decode_qr_data_uri(&src).unwrap_or_else(|e| panic!("decoding the QR code: {e:#}"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session makes chromedriver quit Chromium; fantoccini would send it from a
        // task of the test's runtime, which may be gone by now, so it is sent from here.
        if let Some(session) = self.session.take() {
            let _ = delete_session(self.driver_port, &session);
        }
        if let Some(pid) = self.driver.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.driver.start_kill();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// A WebDriver client of chromedriver on `port` with a headless Chromium of its own.
async fn connect(port: u16, profile: &Path) -> anyhow::Result<Client> {
    let args = [
        "--headless=new".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-quic".to_owned(),
        "--no-first-run".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        "--window-size=1280,800".to_owned(),
        format!("--user-data-dir={}", profile.display()),
    ];
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": { "binary": chromium(), "args": args },
    });
    let serde_json::Value::Object(capabilities) = capabilities else {
        unreachable!("an object");
    };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .context("a WebDriver session")
}

/// `DELETE /session/{id}` to chromedriver, synchronously (usable in `Drop`).
fn delete_session(port: u16, session: &str) -> std::io::Result<()> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "DELETE /session/{session} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    // Read the whole answer (chromedriver may keep the connection open after it).
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        answer.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&answer);
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if answer.len() >= end + 4 + length {
                return Ok(());
            }
        }
    }
}

/// Decodes the QR code in a `data:image/png;base64,…` URI: its text.
pub fn decode_qr_data_uri(src: &str) -> anyhow::Result<String> {
    let Some(encoded) = src.strip_prefix("data:image/png;base64,") else {
        bail!(
            "not a base64 PNG data URI: {}",
            src.chars().take(40).collect::<String>()
        );
    };
    let png = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .context("the base64 of the QR image")?;
    decode_qr_png(&png)
}

/// Decodes the QR code in a PNG: its text. An image drawn with few pixels per module is
/// enlarged (and given a quiet zone) once if the first reading fails.
pub fn decode_qr_png(png: &[u8]) -> anyhow::Result<String> {
    let image = image::load_from_memory(png)
        .context("the QR image as a PNG")?
        .to_luma8();
    if let Some(text) = read_qr(image.clone()) {
        return Ok(text);
    }
    let scale = (600 / image.width().max(1)).max(2);
    let enlarged = image::imageops::resize(
        &image,
        image.width() * scale,
        image.height() * scale,
        image::imageops::FilterType::Nearest,
    );
    let border = 8 * scale;
    let mut framed = image::GrayImage::from_pixel(
        enlarged.width() + 2 * border,
        enlarged.height() + 2 * border,
        image::Luma([255]),
    );
    image::imageops::overlay(&mut framed, &enlarged, i64::from(border), i64::from(border));
    read_qr(framed).context("no readable QR code in the image")
}

fn read_qr(image: image::GrayImage) -> Option<String> {
    let mut prepared = rqrr::PreparedImage::prepare(image);
    prepared
        .detect_grids()
        .into_iter()
        .find_map(|grid| grid.decode().ok().map(|(_, text)| text))
}

/// The code the independent TOTP (`tests/py/totp.py`) computes from `uri` at `unix_time`.
pub fn totp_code(uri: &str, unix_time: i64) -> String {
    let output = std::process::Command::new(crate::smtp::python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/py/totp.py"))
        .arg(uri)
        .arg(unix_time.to_string())
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "totp.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}
