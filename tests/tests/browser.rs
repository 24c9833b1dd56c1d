//! The portal's pages in a real browser (headless Chromium through chromedriver), clicked
//! through as an administrator would, by the ids and labels of docs/portal.md and the seed
//! article's steps: requiring MFA from the **Admins Without MFA Required** tile, removing and
//! restoring the widget, the **Global MFA Requirement**, and the whole enrollment from the
//! emailed **Set Up MFA** link to a login with MFA.
//!
//! Each test serves its own API (database, stream) on a port of its own and drives its own
//! chromedriver and Chromium profile, so the tests run in parallel and twice in a row. Every
//! page visited is saved as a numbered PNG under
//! `$CARGO_TARGET_TMPDIR/browser/<test name>/`.

#[allow(dead_code)]
#[path = "api/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::http::StatusCode;
use chrono::Utc;
use gatehouse_mailer::{MailerConfig, Transport};
use gatehouse_tests::browser::{Browser, Key, totp_code};
use gatehouse_tests::eventually;
use gatehouse_tests::smtp::{ReceivedMail, SmtpServer};
use support::{Api, PASSWORD};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const PATIENCE: Duration = Duration::from_secs(30);
const WIDGET: &str = "/api/v1/widgets/admins-without-mfa-required";
const TILE_LABEL: &str = "Admins Without MFA Required";
const SETUP_SUBJECT: &str = "Set Up MFA";
const CONFIRMATION_SUBJECT: &str = "TOTP MFA reset was successful";

/// Where a test's screenshots go.
fn screenshots(test: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("browser")
        .join(test)
}

/// Creates an `administrator_with_billing` without MFA required; answers their email.
async fn billing_admin_without_mfa(api: &Api) -> String {
    let created = api
        .create_admin(&api.org.key, "administrator_with_billing", Some(false))
        .await;
    created.json["email"].as_str().expect("email").to_owned()
}

/// Logs in at /login by typing into the form, and waits for the page it leads to.
async fn log_in(browser: &Browser, api: &Api, email: &str) {
    browser.goto(&api.url("/login")).await;
    browser.find("#login").await;
    let page = browser.page_text().await;
    assert!(
        page.contains("Email") && page.contains("Password"),
        "the login page shows Email and Password: {page}"
    );
    browser.screenshot("login").await;
    browser.type_into("#email", email).await;
    browser.type_into("#password", PASSWORD).await;
    browser.screenshot("login-filled").await;
    browser.click_and_wait_for_page("#login").await;
}

/// Logs in an admin without MFA required: the Home page.
async fn log_in_to_home(browser: &Browser, api: &Api, email: &str) {
    log_in(browser, api, email).await;
    browser.wait_for_path("/").await;
    browser.find("#settings-link").await;
    browser.screenshot("home").await;
}

/// The count the **Admins Without MFA Required** tile shows.
async fn tile_count(browser: &Browser) -> i64 {
    let text = browser.text("#tile-count").await;
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("#tile-count is not a number: {text:?}"))
}

/// Clicks **Home** in the navigation and waits for the Home page.
async fn go_home(browser: &Browser, shot: &str) {
    browser.follow_nav_link("Home").await;
    browser.wait_for_path("/").await;
    browser.find("#settings-link").await;
    browser.screenshot(shot).await;
}

/// The text of the `<label>` of the input `id`.
async fn label_of(browser: &Browser, id: &str) -> String {
    browser.text(&format!("label[for=\"{id}\"]")).await
}

#[tokio::test]
async fn the_seeds_require_mfa_for_admins_steps_drop_the_tiles_count() {
    let api = Api::serve().await;
    let browser = Browser::start(screenshots(
        "the_seeds_require_mfa_for_admins_steps_drop_the_tiles_count",
    ))
    .await;
    let email = billing_admin_without_mfa(&api).await;
    let mut others = Vec::new();
    for _ in 0..3 {
        others.push(
            api.create_admin(&api.org.key, "administrator", Some(false))
                .await,
        );
    }
    let chosen: Vec<Uuid> = others[..2].iter().map(|a| a.id()).collect();
    let kept = others[2].id();
    // What the widget counts once every one of them is in the read models.
    let widget = api.get_at(WIDGET, &api.org.key, others[2].position()).await;
    widget.expect(StatusCode::OK);
    let expected = widget.json["count"].as_i64().expect("a count");
    assert!(expected >= 4, "the admins made here: {}", widget.json);

    // 1. From the Home page, click the Admins Without MFA Required tile.
    log_in_to_home(&browser, &api, &email).await;
    assert!(
        browser
            .text("#tile-admins-without-mfa-required")
            .await
            .contains(TILE_LABEL),
        "the tile is labelled {TILE_LABEL}"
    );
    let before = tile_count(&browser).await;
    assert_eq!(before, expected, "the tile counts what the widget counts");
    browser
        .click_and_wait_for_page("#tile-admins-without-mfa-required")
        .await;
    browser.wait_for_path("/admins-without-mfa-required").await;
    browser.find("#actions").await;
    assert!(browser.page_text().await.contains(TILE_LABEL));
    browser.screenshot("list").await;
    for id in chosen.iter().chain([&kept]) {
        assert!(
            browser
                .exists(&format!("input.select-admin[value=\"{id}\"]"))
                .await,
            "admin {id} is listed"
        );
    }

    // 2. Select the admins to enforce MFA login for.
    for id in &chosen {
        let checkbox = format!("input.select-admin[value=\"{id}\"]");
        browser.click(&checkbox).await;
        assert!(browser.is_checked(&checkbox).await, "{id} is selected");
    }
    browser.screenshot("selected").await;

    // 3. Click Actions, then Require MFA.
    assert_eq!(browser.text("#actions").await.trim(), "Actions");
    browser.click("#actions").await;
    browser.wait_until_displayed("#require-mfa").await;
    assert_eq!(browser.text("#require-mfa").await.trim(), "Require MFA");
    browser.screenshot("actions").await;
    browser.click("#require-mfa").await;

    // 4. On the confirmation modal, click Require MFA.
    browser
        .wait_until_displayed("dialog#confirm-require-mfa")
        .await;
    assert!(
        browser
            .attr("dialog#confirm-require-mfa", "open")
            .await
            .is_some(),
        "the confirmation modal is open"
    );
    assert_eq!(
        browser.text("#confirm-require-mfa-button").await.trim(),
        "Require MFA"
    );
    browser.screenshot("confirm").await;
    browser
        .click_and_wait_for_page("#confirm-require-mfa-button")
        .await;

    // The list no longer shows them, at once.
    browser.wait_for_path("/admins-without-mfa-required").await;
    browser.find("#actions").await;
    browser.screenshot("list-after").await;
    for id in &chosen {
        assert!(
            !browser
                .exists(&format!("input.select-admin[value=\"{id}\"]"))
                .await,
            "admin {id} is no longer listed"
        );
    }
    assert!(
        browser
            .exists(&format!("input.select-admin[value=\"{kept}\"]"))
            .await,
        "the admin not selected is still listed"
    );

    // Back on Home, the count dropped by two.
    go_home(&browser, "home-after").await;
    assert_eq!(tile_count(&browser).await, before - 2);

    browser.close().await.expect("the browser closes");
}

#[tokio::test]
async fn the_widget_is_removed_and_restored_from_home_settings() {
    let api = Api::serve().await;
    let browser = Browser::start(screenshots(
        "the_widget_is_removed_and_restored_from_home_settings",
    ))
    .await;
    let email = billing_admin_without_mfa(&api).await;
    const TOGGLE: &str = "#widget-admins-without-mfa-required";

    log_in_to_home(&browser, &api, &email).await;
    assert!(browser.exists("#tile-admins-without-mfa-required").await);

    for (visible, round) in [(false, "off"), (true, "on")] {
        // Home > Settings > Configure and Customize Widgets.
        assert_eq!(browser.text("#settings-link").await.trim(), "Settings");
        browser.click_and_wait_for_page("#settings-link").await;
        browser.wait_for_path("/home/settings").await;
        browser.find("#save").await;
        assert!(
            browser
                .page_text()
                .await
                .contains("Configure and Customize Widgets")
        );
        assert_eq!(
            label_of(&browser, "widget-admins-without-mfa-required")
                .await
                .trim(),
            TILE_LABEL
        );
        assert_eq!(browser.is_checked(TOGGLE).await, !visible);
        browser.screenshot(&format!("widgets-{round}")).await;

        // Toggle Admins Without MFA Required, then Save.
        browser.click(TOGGLE).await;
        assert_eq!(browser.is_checked(TOGGLE).await, visible);
        browser
            .screenshot(&format!("widgets-toggled-{round}"))
            .await;
        browser.click_and_wait_for_page("#save").await;
        browser.find("body").await;
        browser.screenshot(&format!("saved-{round}")).await;

        go_home(&browser, &format!("home-{round}")).await;
        assert_eq!(
            browser.exists("#tile-admins-without-mfa-required").await,
            visible,
            "the tile after toggling it {round}"
        );
        assert_eq!(browser.exists("#tile-count").await, visible);
    }

    browser.close().await.expect("the browser closes");
}

#[tokio::test]
async fn turning_the_global_mfa_requirement_on_brings_the_widget_to_zero() {
    let api = Api::serve().await;
    let browser = Browser::start(screenshots(
        "turning_the_global_mfa_requirement_on_brings_the_widget_to_zero",
    ))
    .await;
    let email = billing_admin_without_mfa(&api).await;
    for _ in 0..2 {
        api.create_admin(&api.org.key, "administrator", Some(false))
            .await;
    }
    let last = api
        .create_admin(&api.org.key, "administrator", Some(false))
        .await;
    api.get_at(WIDGET, &api.org.key, last.position())
        .await
        .expect(StatusCode::OK);

    log_in_to_home(&browser, &api, &email).await;
    assert!(tile_count(&browser).await >= 4);

    // Settings > Security > Admin Accounts: Global MFA Requirement, Save.
    browser.follow_nav_link("Settings").await;
    browser.wait_for_path("/settings/security").await;
    browser.find("#save").await;
    let page = browser.page_text().await;
    for label in ["Security", "Admin Accounts", "Global MFA Requirement"] {
        assert!(page.contains(label), "the page shows {label}: {page}");
    }
    assert_eq!(
        label_of(&browser, "global-mfa-required").await.trim(),
        "Global MFA Requirement"
    );
    assert!(!browser.is_checked("#global-mfa-required").await);
    browser.screenshot("security").await;
    browser.click("#global-mfa-required").await;
    assert!(browser.is_checked("#global-mfa-required").await);
    browser.screenshot("security-checked").await;
    browser.click_and_wait_for_page("#save").await;
    browser.find("#global-mfa-required").await;
    assert!(browser.is_checked("#global-mfa-required").await);
    browser.screenshot("security-saved").await;

    // Home: the widget counts nobody, and its list is empty.
    go_home(&browser, "home-after").await;
    assert_eq!(tile_count(&browser).await, 0);
    browser
        .click_and_wait_for_page("#tile-admins-without-mfa-required")
        .await;
    browser.wait_for_path("/admins-without-mfa-required").await;
    browser.find("#actions").await;
    browser.screenshot("list-empty").await;
    assert!(browser.find_all("input.select-admin").await.is_empty());

    browser.close().await.expect("the browser closes");
}

/// Waits for the `n`-th email to `address` whose subject contains `subject`.
async fn nth_email(smtp: &SmtpServer, address: &str, subject: &str, n: usize) -> ReceivedMail {
    eventually(PATIENCE, &format!("email {n} '{subject}'"), || async {
        smtp.messages()
            .into_iter()
            .filter(|m| m.is_to(address) && m.subject().contains(subject))
            .nth(n - 1)
    })
    .await
}

/// The target of the email's **Set Up MFA** link, as a mail reader would follow it.
fn set_up_mfa_link(mail: &ReceivedMail) -> String {
    let html = mail.html.as_deref().expect("an HTML alternative");
    let end = html
        .find(">Set Up MFA</a>")
        .expect("a Set Up MFA link in the HTML");
    let start = html[..end].rfind("href=\"").expect("the link's href") + "href=\"".len();
    let href = &html[start..end];
    let href = &href[..href.find('"').expect("the end of the href")];
    href.replace("&amp;", "&")
}

#[tokio::test]
async fn the_whole_enrollment_from_the_emailed_link_then_login_with_mfa() {
    let smtp = SmtpServer::start().await;
    let api = Api::serve().await;
    let browser = Browser::start(screenshots(
        "the_whole_enrollment_from_the_emailed_link_then_login_with_mfa",
    ))
    .await;
    let shutdown = CancellationToken::new();
    let mailer = tokio::spawn(gatehouse_mailer::run(
        api.env.db.clone(),
        api.env.jetstream.clone(),
        MailerConfig::new(
            &api.env.stream,
            &api.env.prefix,
            &api.public_url,
            Transport::Smtp { url: smtp.url() },
        ),
        shutdown.clone(),
    ));

    // A new admin is required to use MFA by default: the Set Up MFA email goes out.
    let created = api.create_admin(&api.org.key, "administrator", None).await;
    let address = created.json["email"].as_str().expect("email").to_owned();
    let mail = nth_email(&smtp, &address, SETUP_SUBJECT, 1).await;
    let link = set_up_mfa_link(&mail);
    assert!(
        link.starts_with(&api.url("/mfa/setup?token=")),
        "the link leads to this portal: {link}"
    );

    // Click Set Up MFA in the email; Set Up MFA is activated once Email and Password are in.
    browser.goto(&link).await;
    browser.wait_for_path("/mfa/setup").await;
    browser.find("#setup").await;
    assert_eq!(label_of(&browser, "email").await.trim(), "Email");
    assert_eq!(label_of(&browser, "password").await.trim(), "Password");
    assert_eq!(browser.text("#setup").await.trim(), "Set Up MFA");
    assert!(!browser.is_enabled("#setup").await, "disabled while empty");
    browser.screenshot("setup").await;
    browser.type_into("#email", &address).await;
    assert!(
        !browser.is_enabled("#setup").await,
        "disabled without the password"
    );
    browser.type_into("#password", PASSWORD).await;
    browser.wait_until_enabled("#setup").await;
    browser.screenshot("setup-filled").await;
    browser.click("#setup").await;

    // Download an Authenticator App, or I Have An App.
    browser.wait_until_displayed("#have-app").await;
    assert!(browser.is_displayed("#download-app").await);
    assert_eq!(
        browser.text("#download-app").await.trim(),
        "Download an Authenticator App"
    );
    assert_eq!(browser.text("#have-app").await.trim(), "I Have An App");
    browser.screenshot("app").await;
    browser.click("#have-app").await;

    // Scan the QR code (decoded from its pixels) and compute the code independently.
    browser.wait_until_displayed("img#qr").await;
    browser.wait_until_displayed("#code").await;
    browser.screenshot("qr").await;
    let uri = browser.qr_uri().await;
    assert!(uri.starts_with("otpauth://totp/"), "a TOTP URI: {uri}");
    let key: String = browser
        .text("#secret")
        .await
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    assert!(
        uri.contains(&format!("secret={key}")),
        "the key shown ({key}) is the QR code's"
    );

    // Submit is activated by six digits.
    let code = totp_code(&uri, Utc::now().timestamp());
    assert!(!browser.is_enabled("#submit").await, "disabled while empty");
    browser.type_into("#code", &code[..5]).await;
    assert!(
        !browser.is_enabled("#submit").await,
        "disabled with five digits"
    );
    browser.type_into("#code", &code[5..]).await;
    browser.wait_until_enabled("#submit").await;
    assert_eq!(browser.text("#submit").await.trim(), "Submit");
    browser.screenshot("code").await;
    browser.click("#submit").await;
    browser.wait_until_displayed("#success").await;
    assert!(
        browser
            .text("#success")
            .await
            .contains("MFA reset was successful")
    );
    browser.screenshot("success").await;
    nth_email(&smtp, &address, CONFIRMATION_SUBJECT, 1).await;

    // Then the login asks for a code: the next step's, since this one is spent.
    log_in(&browser, &api, &address).await;
    browser.wait_for_path("/login/verify").await;
    browser.find("#verify").await;
    assert!(browser.page_text().await.contains("Verify Your Identity"));
    assert_eq!(label_of(&browser, "code").await.trim(), "Verification Code");
    assert!(browser.exists("#reset-link").await);
    browser.screenshot("verify").await;
    browser
        .type_into("#code", &totp_code(&uri, Utc::now().timestamp() + 30))
        .await;
    browser.screenshot("verify-filled").await;
    browser.click_and_wait_for_page("#verify").await;
    browser.wait_for_path("/").await;
    browser.find("#settings-link").await;
    browser.screenshot("home").await;

    browser.close().await.expect("the browser closes");
    shutdown.cancel();
    mailer
        .await
        .expect("the mailer does not panic")
        .expect("the mailer stops cleanly");
}

#[tokio::test]
async fn everything_works_by_keyboard_and_nothing_scrolls_sideways_on_a_phone() {
    let api = Api::serve().await;
    let browser = Browser::start(screenshots(
        "everything_works_by_keyboard_and_nothing_scrolls_sideways_on_a_phone",
    ))
    .await;
    let email = billing_admin_without_mfa(&api).await;
    let chosen = api
        .create_admin(&api.org.key, "administrator", Some(false))
        .await;
    let other = api
        .create_admin(&api.org.key, "administrator", Some(false))
        .await;
    api.get_at(WIDGET, &api.org.key, other.position())
        .await
        .expect(StatusCode::OK);
    let select = |id: Uuid| format!("#select-{id}");

    // Log in without the mouse: the email field has the focus when the page opens.
    browser.goto(&api.url("/login")).await;
    browser.find("#login").await;
    assert!(
        browser.has_focus("#email").await,
        "the email field has the focus"
    );
    browser.press(&email).await;
    browser.press(&Key::Tab).await;
    assert!(
        browser.has_focus("#password").await,
        "Tab leads to Password"
    );
    browser.press(PASSWORD).await;
    browser.press_and_wait_for_page(&Key::Enter).await;
    browser.wait_for_path("/").await;
    browser.screenshot("home").await;

    // Home → the tile → select one admin with Space → Actions → Require MFA → confirm.
    browser.tab_to("#tile-admins-without-mfa-required").await;
    let before = tile_count(&browser).await;
    browser.press_and_wait_for_page(&Key::Enter).await;
    browser.wait_for_path("/admins-without-mfa-required").await;
    browser.tab_to(&select(chosen.id())).await;
    browser.press(" ").await;
    assert!(browser.is_checked(&select(chosen.id())).await);
    browser.tab_to("#actions").await;
    browser.press(&Key::Enter).await;
    browser.wait_until_displayed("#require-mfa").await;
    browser.tab_to("#require-mfa").await;
    browser.screenshot("actions").await;
    browser.press(&Key::Enter).await;
    browser
        .wait_until_displayed("dialog#confirm-require-mfa")
        .await;
    assert!(
        browser.has_focus("#confirm-require-mfa-button").await,
        "the modal's Require MFA button has the focus"
    );
    browser.screenshot("confirm").await;
    browser.press_and_wait_for_page(&Key::Enter).await;
    browser.find("#actions").await;
    assert!(!browser.exists(&select(chosen.id())).await);
    assert!(browser.exists(&select(other.id())).await);

    // Escape closes the modal without requiring anything.
    browser.tab_to(&select(other.id())).await;
    browser.press(" ").await;
    browser.tab_to("#actions").await;
    browser.press(&Key::Enter).await;
    browser.tab_to("#require-mfa").await;
    browser.press(&Key::Enter).await;
    browser
        .wait_until_displayed("dialog#confirm-require-mfa")
        .await;
    browser.press(&Key::Escape).await;
    eventually(PATIENCE, "the modal to close", || async {
        (!browser.is_displayed("dialog#confirm-require-mfa").await).then_some(())
    })
    .await;
    assert!(browser.exists(&select(other.id())).await);

    // An admin's page: the Multi-Factor Authentication Required toggle and Save, by keyboard.
    browser
        .goto(&api.url(&format!("/admins/{}", other.id())))
        .await;
    browser.find("#mfa-required").await;
    browser.tab_to("#mfa-required").await;
    browser.press(" ").await;
    assert!(browser.is_checked("#mfa-required").await);
    browser.tab_to("#save").await;
    browser.press_and_wait_for_page(&Key::Enter).await;
    assert_eq!(browser.text("#admin-requirement").await.trim(), "Required");
    browser.screenshot("admin-saved").await;
    go_home(&browser, "home-after").await;
    assert_eq!(tile_count(&browser).await, before - 2);

    // On a phone-sized window every page fits its width (tables scroll inside their card).
    browser.resize(390, 844).await;
    let pages = [
        ("/".to_owned(), "#settings-link"),
        ("/admins-without-mfa-required".to_owned(), "#actions"),
        ("/admins".to_owned(), "table"),
        (format!("/admins/{}", other.id()), "#mfa-required"),
        ("/settings/security".to_owned(), "#global-mfa-required"),
        ("/home/settings".to_owned(), "#save"),
    ];
    for (n, (path, ready)) in pages.iter().enumerate() {
        browser.goto(&api.url(path)).await;
        browser.find(ready).await;
        browser.screenshot(&format!("phone-{n}")).await;
        assert!(
            browser.sideways_overflow().await <= 0,
            "{path} scrolls sideways at 390 px wide"
        );
    }

    browser.close().await.expect("the browser closes");
}
