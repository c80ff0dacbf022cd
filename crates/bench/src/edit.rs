//! Image edits in a large file: the largest stream reported to Flux v1 (fluxcd/flux#1857: 2.7 MB, 3,478
//! workloads and Services, where Flux v1's kubeyaml took 27 s per edit). tether splits the file into
//! documents and parses only the one it edits; rendering the whole stream (every document parsed, what a
//! sync does with the file) is the reference, measured in the same run.

use std::fmt::Write as _;
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;
use tether_automation::yaml_edit::{set_image, Target};
use tether_core::ObjectId;

/// One measured operation.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// What was timed.
    pub what: &'static str,
    /// Median wall time over the repetitions.
    pub median_ms: f64,
}

/// `pairs` Deployments with a Service each, about 780 bytes per document.
fn stream(pairs: usize) -> String {
    let mut s = String::new();
    for i in 0..pairs {
        let t = i % 40;
        let _ = write!(
            s,
            "---\n# workload {i}\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{i}\n  namespace: team-{t}\n  labels: {{app: app-{i}, tier: backend}}\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {{app: app-{i}}}\n  template:\n    metadata:\n      labels: {{app: app-{i}}}\n    spec:\n      containers:\n      - name: main\n        image: registry.example.com/team-{t}/app-{i}:1.0.{i}\n        ports:\n        - containerPort: 8080\n        env:\n        - {{name: LOG_LEVEL, value: info}}\n        - {{name: CONFIG_PATH, value: /etc/app-{i}/config.yaml}}\n        - {{name: DATABASE_URL, value: \"postgres://db.team-{t}.svc:5432/app_{i}\"}}\n        - {{name: CACHE_URL, value: \"redis://cache.team-{t}.svc:6379/{i}\"}}\n        - {{name: FEATURE_FLAGS, value: \"search,recommendations,checkout-v2,new-ui\"}}\n        - {{name: OTEL_EXPORTER_OTLP_ENDPOINT, value: \"http://otel.observability.svc:4317\"}}\n        - {{name: JAVA_OPTS, value: \"-Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=200\"}}\n        - {{name: SERVICE_NAME, value: app-{i}}}\n        - {{name: TEAM, value: team-{t}}}\n        resources:\n          requests: {{cpu: 100m, memory: 128Mi}}\n          limits: {{cpu: 500m, memory: 512Mi}}\n        readinessProbe:\n          httpGet: {{path: /healthz, port: 8080}}\n          periodSeconds: 10\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: app-{i}\n  namespace: team-{t}\n  annotations: {{description: \"the service in front of app-{i}, of team {t}, with a long annotation\"}}\nspec:\n  selector: {{app: app-{i}}}\n  ports:\n  - {{port: 80, targetPort: 8080, protocol: TCP}}\n"
        );
    }
    s
}

fn median_ms(reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let started = Instant::now();
        f()?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Times one image edit near the end of the stream, and the full render of the stream.
pub fn run(reps: usize) -> Result<(usize, Vec<Row>)> {
    let text = stream(1739);
    let target = Target::new(ObjectId::new(
        "apps/v1",
        "Deployment",
        Some("team-2"),
        "app-1722",
    ));
    let edit = median_ms(reps, || {
        set_image(
            &text,
            &target,
            "main",
            "registry.example.com/team-2/app-1722:2.0",
        )
        .map(drop)
        .map_err(anyhow::Error::from)
    })?;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("stream.yaml"), &text)?;
    let render = median_ms(reps, || {
        tether_render::render(dir.path(), &[])
            .map(drop)
            .map_err(|e| anyhow::anyhow!("{e}"))
    })?;
    Ok((
        text.len(),
        vec![
            Row {
                what: "one image edit (tether)",
                median_ms: edit,
            },
            Row {
                what: "reference: rendering the whole stream",
                median_ms: render,
            },
        ],
    ))
}

/// The section of the report.
pub fn markdown(bytes: usize, rows: &[Row]) -> String {
    let mut md = format!(
        "\n## Image edit in a large file\n\nOne {:.1} MB stream of 3,478 documents (1,739 Deployments with a \
         Service each), the size reported in fluxcd/flux#1857; the edit changes one container's image near \
         the end. Median of the repetitions.\n\n| operation | median |\n|---|---|\n",
        bytes as f64 / 1e6
    );
    for r in rows {
        let _ = writeln!(md, "| {} | {:.1} ms |", r.what, r.median_ms);
    }
    md
}
