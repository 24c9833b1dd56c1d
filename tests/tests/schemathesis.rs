//! The OpenAPI document against the API that serves it (issue 8): Schemathesis (PyPI
//! `schemathesis`, installed by `.ci/run`) reads `GET /api/openapi.json` from a real server on
//! a loopback port of its own (its own database and NATS stream, the relay and the projections
//! running) and sends generated requests to every route with an `administrator_with_billing`'s
//! API key, so nearly every route gets past authorisation. It must find no 5xx answer, no status
//! code, content type or header the document does not declare, and no body outside its schema.
//!
//! The run is bounded (`MAX_EXAMPLES` per operation) and seeded, so CI is reproducible; it keeps
//! no Hypothesis database and writes nothing into the repository. Its narrow exclusions are in
//! `tests/py/schemathesis.toml`, each with its reason.

#[allow(dead_code)]
#[path = "api/support.rs"]
mod support;

use std::process::Stdio;
use std::time::Duration;

use gatehouse_domain::Role;
use support::Api;
use uuid::Uuid;

const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/py/schemathesis.toml");

/// Generated cases per operation and phase: enough to reach every documented refusal of the
/// 31 operations, few enough for the run to stay well under two minutes on two cores.
/// `GATEHOUSE_SCHEMATHESIS_MAX_EXAMPLES` overrides it for a deeper run by hand.
const MAX_EXAMPLES: &str = "20";

/// A fixed seed: the same cases in every run.
const SEED: &str = "20261129";

/// The checks, all of which must pass:
/// - `not_a_server_error`: odd input is refused with a 4xx, never a 5xx;
/// - `status_code_conformance`: every status answered is documented for its operation;
/// - `content_type_conformance`: every answer's content type is documented;
/// - `response_headers_conformance`: documented headers (`Gatehouse-Position`) are present
///   and of their type;
/// - `response_schema_conformance`: every JSON body matches its documented schema.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance";

/// A guard against a hung run, not a performance assertion.
const GIVE_UP_AFTER: Duration = Duration::from_secs(600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_openapi_document() {
    let api = Api::serve().await;
    // Admins of every role, with and without MFA required, so that the lists, the widget and
    // the audit history have something to answer.
    for (i, role) in Role::ALL.into_iter().enumerate() {
        api.create_admin(&api.org.key, role.as_str(), Some(i % 2 == 0))
            .await;
    }

    // A working directory of the run's own: Schemathesis writes nothing into the repository.
    let workdir = std::env::temp_dir().join(format!("gh-schemathesis-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&workdir).expect("a working directory");
    let schema = api.url("/api/openapi.json");
    let max_examples = std::env::var("GATEHOUSE_SCHEMATHESIS_MAX_EXAMPLES")
        .unwrap_or_else(|_| MAX_EXAMPLES.to_owned());
    let run = tokio::process::Command::new("python3")
        .args(["-m", "schemathesis.cli", "--config-file", CONFIG, "run"])
        .arg(&schema)
        .args(["--header", &format!("x-api-key: {}", api.org.key)])
        .args(["--checks", CHECKS])
        .args(["--max-examples", &max_examples])
        .args(["--seed", SEED])
        .args(["--generation-database", "none"])
        .args(["--workers", "2"])
        .args(["--request-timeout", "10"])
        .args(["--wait-for-schema", "10"])
        .arg("--no-color")
        .current_dir(&workdir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(GIVE_UP_AFTER, run)
        .await
        .unwrap_or_else(|_| panic!("schemathesis was still running after {GIVE_UP_AFTER:?}"))
        .expect(
            "python3 -m schemathesis.cli must run: python3 -m pip install 'schemathesis==4.32.*' \
             (.ci/run does)",
        );
    let _ = std::fs::remove_dir_all(&workdir);

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "schemathesis found problems ({}):\n{stdout}\n{stderr}",
        output.status
    );
    // Shown with --nocapture (and by nextest on success with --success-output): the summary.
    println!("{stdout}");
}
