use super::*;

#[track_caller]
fn migrate(text: &str) -> (String, Vec<Change>) {
    match migrate_text(text) {
        Ok(out) => out,
        Err(e) => panic!("expected a migration, got: {e}"),
    }
}

#[track_caller]
fn error(text: &str) -> MigrateError {
    match migrate_text(text) {
        Ok((out, _)) => panic!("expected an error, got:\n{out}"),
        Err(e) => e,
    }
}

#[track_caller]
fn notes(changes: &[Change]) -> Vec<&str> {
    changes
        .iter()
        .flat_map(|c| c.notes.iter().map(String::as_str))
        .collect()
}

// ---- apiVersion only ----------------------------------------------------------------------------------

const MIXED: &str = "\
# Flux v1 install, trimmed.
apiVersion: v1
kind: ServiceAccount
metadata:
  name: flux
---
apiVersion: \"rbac.authorization.k8s.io/v1beta1\" # as generated
kind: ClusterRole
metadata:
  name: flux
rules:
  - apiGroups: ['*']
    resources: ['*']
    verbs: ['*']
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: memcached
spec:
  selector:
    matchLabels: {name: memcached}
  template:
    metadata:
      labels: {name: memcached}
    spec:
      containers:
      - name: memcached
        image: memcached:1.5.15
";

#[test]
fn only_the_removed_document_changes_and_only_its_api_version() {
    let (out, changes) = migrate(MIXED);
    assert_eq!(
        out,
        MIXED.replacen(
            "\"rbac.authorization.k8s.io/v1beta1\"",
            "\"rbac.authorization.k8s.io/v1\"",
            1
        )
    );
    assert_eq!(
        changes,
        vec![Change {
            line: 7,
            kind: "ClusterRole".to_owned(),
            name: "flux".to_owned(),
            from: "rbac.authorization.k8s.io/v1beta1".to_owned(),
            to: "rbac.authorization.k8s.io/v1".to_owned(),
            notes: vec![],
        }]
    );
}

#[test]
fn every_row_without_field_changes_converts_by_api_version_alone() {
    for (from, kind, to) in [
        (
            "rbac.authorization.k8s.io/v1beta1",
            "RoleBinding",
            "rbac.authorization.k8s.io/v1",
        ),
        ("batch/v1beta1", "CronJob", "batch/v1"),
        (
            "autoscaling/v2beta2",
            "HorizontalPodAutoscaler",
            "autoscaling/v2",
        ),
        (
            "extensions/v1beta1",
            "NetworkPolicy",
            "networking.k8s.io/v1",
        ),
        (
            "networking.k8s.io/v1beta1",
            "IngressClass",
            "networking.k8s.io/v1",
        ),
        (
            "scheduling.k8s.io/v1beta1",
            "PriorityClass",
            "scheduling.k8s.io/v1",
        ),
        (
            "storage.k8s.io/v1beta1",
            "StorageClass",
            "storage.k8s.io/v1",
        ),
        ("node.k8s.io/v1beta1", "RuntimeClass", "node.k8s.io/v1"),
        ("apps/v1beta2", "ControllerRevision", "apps/v1"),
        (
            "flowcontrol.apiserver.k8s.io/v1beta3",
            "FlowSchema",
            "flowcontrol.apiserver.k8s.io/v1",
        ),
    ] {
        let text = format!(
            "apiVersion: {from}\nkind: {kind}\nmetadata:\n  name: x # keep\nspec:\n  a: 1\n"
        );
        let (out, changes) = migrate(&text);
        assert_eq!(out, text.replacen(from, to, 1), "{from} {kind}");
        assert_eq!(changes.len(), 1);
        assert_eq!(
            (changes[0].from.as_str(), changes[0].to.as_str()),
            (from, to)
        );
        assert!(changes[0].notes.is_empty(), "{:?}", changes[0].notes);
    }
}

#[test]
fn cron_jobs_keep_their_schedule_quoting_and_comments() {
    let text = "\
apiVersion: batch/v1beta1
kind: CronJob
metadata:
  name: backup
spec:
  schedule: '0 3 * * *'   # nightly
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers:
          - name: backup
            image: backup:1.0
";
    let (out, _) = migrate(text);
    assert_eq!(out, text.replacen("batch/v1beta1", "batch/v1", 1));
}

#[test]
fn a_flow_style_document_changes_its_api_version_in_place() {
    let text =
        "{apiVersion: networking.k8s.io/v1beta1, kind: IngressClass, metadata: {name: nginx}, \
                spec: {controller: k8s.io/ingress-nginx}}\n";
    let (out, _) = migrate(text);
    assert_eq!(
        out,
        text.replacen("networking.k8s.io/v1beta1", "networking.k8s.io/v1", 1)
    );
}

#[test]
fn already_current_files_are_returned_as_they_are() {
    let text = "\
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web}
spec:
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 80}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
---
# only a comment
---
- not
- an object
---
just a scalar
";
    assert_eq!(migrate(text), (text.to_owned(), vec![]));
    let crlf = text.replace('\n', "\r\n");
    assert_eq!(migrate(&crlf), (crlf.clone(), vec![]));
}

#[test]
fn non_objects_around_a_conversion_stay_byte_identical() {
    let text = "\
- a list
- document
---
apiVersion: batch/v1beta1
kind: CronJob
metadata: {name: c}
---
plain scalar   # with a comment
";
    let (out, changes) = migrate(text);
    assert_eq!(out, text.replacen("batch/v1beta1", "batch/v1", 1));
    assert_eq!(changes[0].line, 4);
}

// ---- PodDisruptionBudget, PriorityLevelConfiguration --------------------------------------------------

#[test]
fn an_empty_pdb_selector_is_left_as_written_with_a_note() {
    let text = "\
apiVersion: policy/v1beta1
kind: PodDisruptionBudget
metadata:
  name: all
spec:
  minAvailable: 1
  selector: {}
";
    let (out, changes) = migrate(text);
    assert_eq!(out, text.replacen("policy/v1beta1", "policy/v1", 1));
    let notes = notes(&changes);
    assert_eq!(notes.len(), 1);
    assert!(notes[0].contains("every pod"), "{notes:?}");

    let selecting = text.replace(
        "selector: {}",
        "selector:\n    matchLabels:\n      app: web",
    );
    let (out, changes) = migrate(&selecting);
    assert_eq!(out, selecting.replacen("policy/v1beta1", "policy/v1", 1));
    assert!(changes[0].notes.is_empty());
}

#[test]
fn priority_levels_rename_assured_concurrency_shares() {
    let text = "\
apiVersion: flowcontrol.apiserver.k8s.io/v1beta2
kind: PriorityLevelConfiguration
metadata:
  name: batch
spec:
  type: Limited
  limited:
    assuredConcurrencyShares: 10 # a tenth of the default
    limitResponse:
      type: Reject
";
    let (out, changes) = migrate(text);
    assert_eq!(
        out,
        text.replacen(
            "flowcontrol.apiserver.k8s.io/v1beta2",
            "flowcontrol.apiserver.k8s.io/v1",
            1
        )
        .replacen("assuredConcurrencyShares", "nominalConcurrencyShares", 1)
    );
    assert_eq!(
        notes(&changes),
        ["spec.limited: assuredConcurrencyShares 10 → nominalConcurrencyShares"]
    );
}

// ---- workloads ----------------------------------------------------------------------------------------

#[test]
fn a_deployment_gets_the_selector_it_defaulted_to_and_loses_rollback_to() {
    let text = "\
apiVersion: extensions/v1beta1
kind: Deployment
metadata:
  name: podinfo
  namespace: demo
  annotations:
    flux.weave.works/automated: \"true\"
spec:
  replicas: 2
  rollbackTo:
    revision: 3
  # the pods
  template:
    metadata:
      labels:
        app: podinfo
        tier: \"backend\"
    spec:
      containers:
      - name: podinfo
        image: stefanprodan/podinfo:1.4.2 # pinned
";
    let (out, changes) = migrate(text);
    assert_eq!(
        out,
        "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: podinfo
  namespace: demo
  annotations:
    flux.weave.works/automated: \"true\"
spec:
  replicas: 2
  selector:
    matchLabels:
      app: podinfo
      tier: backend
  # the pods
  template:
    metadata:
      labels:
        app: podinfo
        tier: \"backend\"
    spec:
      containers:
      - name: podinfo
        image: stefanprodan/podinfo:1.4.2 # pinned
"
    );
    assert_eq!(changes[0].to, "apps/v1");
    let notes = notes(&changes);
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(notes[0].starts_with("spec.selector added: matchLabels app=podinfo,tier=backend"));
    assert!(notes[1].starts_with("spec.rollbackTo dropped"));
}

#[test]
fn a_daemon_set_whose_spec_starts_with_its_template_gets_the_selector_first() {
    let text = "\
apiVersion: extensions/v1beta1
kind: DaemonSet
metadata:
    name: node-exporter
spec:
    template:
        metadata:
            labels: {app: node-exporter, \"app.kubernetes.io/part-of\": monitoring}
        spec:
            containers:
            -   name: node-exporter
                image: prom/node-exporter:v0.18.1
";
    let (out, changes) = migrate(text);
    assert_eq!(
        out,
        text.replacen("extensions/v1beta1", "apps/v1", 1).replacen(
            "spec:\n    template:",
            "spec:\n    selector:\n        matchLabels:\n            app: node-exporter\n            \
             app.kubernetes.io/part-of: monitoring\n    template:",
            1
        )
    );
    let notes = notes(&changes);
    assert!(
        notes
            .iter()
            .any(|n| n.contains("updateStrategy") && n.contains("OnDelete")),
        "{notes:?}"
    );
}

#[test]
fn a_workload_with_a_selector_changes_only_its_api_version() {
    let text = "\
apiVersion: apps/v1beta2
kind: StatefulSet
metadata:
  name: db
spec:
  serviceName: db
  selector:
    matchLabels:
      app: db
  updateStrategy:
    type: RollingUpdate
  template:
    metadata:
      labels:
        app: db
    spec:
      containers:
      - name: db
        image: postgres:11
";
    let (out, changes) = migrate(text);
    assert_eq!(out, text.replacen("apps/v1beta2", "apps/v1", 1));
    assert!(changes[0].notes.is_empty(), "{:?}", changes[0].notes);
}

#[test]
fn a_workload_without_template_labels_cannot_get_a_selector() {
    let text = "\
apiVersion: apps/v1beta1
kind: Deployment
metadata:
  name: bare
spec:
  template:
    spec:
      containers:
      - name: bare
        image: busybox
";
    let e = error(text);
    assert!(
        matches!(&e, MigrateError::Invalid { line: 1, kind, name, to, .. }
            if kind == "Deployment" && name == "bare" && to == "apps/v1"),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("spec.template.metadata.labels"),
        "{e}"
    );
}

// ---- HorizontalPodAutoscaler --------------------------------------------------------------------------

const HPA: &str = "\
---
# Autoscale podinfo on CPU and memory.
apiVersion: autoscaling/v2beta1
kind: HorizontalPodAutoscaler
metadata:
  name: podinfo
  namespace: demo
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: podinfo
  minReplicas: 1
  maxReplicas: 4
  metrics:
  - type: Resource
    resource:
      name: cpu
      # scale up at 80% of requests
      targetAverageUtilization: 80 # percent
  - type: Resource
    resource:
      name: memory
      targetAverageValue: 200Mi
";

const HPA_V2: &str = "\
---
# Autoscale podinfo on CPU and memory.
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: podinfo
  namespace: demo
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: podinfo
  minReplicas: 1
  maxReplicas: 4
  metrics:
  - type: Resource
    resource:
      name: cpu
      # scale up at 80% of requests
      target:
        type: Utilization
        averageUtilization: 80 # percent
  - type: Resource
    resource:
      name: memory
      target:
        type: AverageValue
        averageValue: 200Mi
";

#[test]
fn resource_metrics_get_a_target_block() {
    let (out, changes) = migrate(HPA);
    assert_eq!(out, HPA_V2);
    assert_eq!(
        changes,
        vec![Change {
            line: 3,
            kind: "HorizontalPodAutoscaler".to_owned(),
            name: "podinfo".to_owned(),
            from: "autoscaling/v2beta1".to_owned(),
            to: "autoscaling/v2".to_owned(),
            notes: vec![
                "metrics[0]: targetAverageUtilization 80 → target.averageUtilization".to_owned(),
                "metrics[1]: targetAverageValue 200Mi → target.averageValue".to_owned(),
            ],
        }]
    );
}

#[test]
fn crlf_files_stay_crlf() {
    let crlf = HPA.replace('\n', "\r\n");
    let (out, _) = migrate(&crlf);
    assert_eq!(out, HPA_V2.replace('\n', "\r\n"));
}

#[test]
fn pods_object_and_external_metrics_with_indented_lists_and_four_space_steps() {
    let text = "\
apiVersion: autoscaling/v2beta1
kind: HorizontalPodAutoscaler
metadata:
    name: api
spec:
    scaleTargetRef:
        apiVersion: apps/v1
        kind: Deployment
        name: api
    maxReplicas: 10
    metrics:
        - type: Pods
          pods:
              metricName: packets-per-second   # from the adapter
              targetAverageValue: 1k
        - type: Object
          object:
              target:
                  apiVersion: networking.k8s.io/v1
                  kind: Ingress
                  name: main-route
              metricName: requests-per-second
              targetValue: 2k
        - type: External
          external:
              metricName: queue_messages_ready
              metricSelector:
                  # only the worker queue
                  matchLabels:
                      queue: \"worker_tasks\"
              targetAverageValue: 30
";
    let (out, changes) = migrate(text);
    assert_eq!(
        out,
        "\
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
    name: api
spec:
    scaleTargetRef:
        apiVersion: apps/v1
        kind: Deployment
        name: api
    maxReplicas: 10
    metrics:
        - type: Pods
          pods:
              metric:
                  name: packets-per-second   # from the adapter
              target:
                  type: AverageValue
                  averageValue: 1k
        - type: Object
          object:
              describedObject:
                  apiVersion: networking.k8s.io/v1
                  kind: Ingress
                  name: main-route
              metric:
                  name: requests-per-second
              target:
                  type: Value
                  value: 2k
        - type: External
          external:
              metric:
                  name: queue_messages_ready
                  selector:
                      # only the worker queue
                      matchLabels:
                          queue: \"worker_tasks\"
              target:
                  type: AverageValue
                  averageValue: 30
"
    );
    assert_eq!(
        notes(&changes),
        [
            "metrics[0]: metricName packets-per-second → metric.name",
            "metrics[0]: targetAverageValue 1k → target.averageValue",
            "metrics[1]: target → describedObject",
            "metrics[1]: metricName requests-per-second → metric.name",
            "metrics[1]: targetValue 2k → target.value",
            "metrics[2]: metricName queue_messages_ready → metric.name",
            "metrics[2]: metricSelector → metric.selector",
            "metrics[2]: targetAverageValue 30 → target.averageValue",
        ]
    );
}

#[test]
fn a_selector_apart_from_its_metric_name_moves_under_metric() {
    let text = "\
apiVersion: autoscaling/v2beta1
kind: HorizontalPodAutoscaler
metadata:
  name: worker
spec:
  metrics:
  - type: External
    external:
      metricName: queue
      targetValue: 30
      metricSelector:
        matchLabels:
          queue: tasks
  - type: Object
    object:
      target:
        kind: Service
        name: web
      metricName: rps
      targetValue: 100
      averageValue: 10
";
    let (out, changes) = migrate(text);
    assert_eq!(
        out,
        "\
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: worker
spec:
  metrics:
  - type: External
    external:
      metric:
        name: queue
        selector:
          matchLabels:
            queue: tasks
      target:
        type: Value
        value: 30
  - type: Object
    object:
      describedObject:
        kind: Service
        name: web
      metric:
        name: rps
      target:
        type: AverageValue
        averageValue: 10
"
    );
    assert!(
        notes(&changes).contains(
            &"metrics[1]: targetValue 100 dropped (the controller ignored it because averageValue is set)"
        ),
        "{:?}",
        notes(&changes)
    );
}

#[test]
fn an_hpa_without_metrics_changes_only_its_api_version() {
    let text = "\
apiVersion: autoscaling/v2beta1
kind: HorizontalPodAutoscaler
metadata: {name: web}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  maxReplicas: 3
";
    let (out, _) = migrate(text);
    assert_eq!(
        out,
        text.replacen("autoscaling/v2beta1", "autoscaling/v2", 1)
    );
}

#[test]
fn flow_style_metrics_are_refused_with_their_line() {
    let text = "\
apiVersion: autoscaling/v2beta1
kind: HorizontalPodAutoscaler
metadata:
  name: web
spec:
  metrics:
  - type: Resource
    resource: {name: cpu, targetAverageUtilization: 80}
";
    let e = error(text);
    assert!(
        matches!(&e, MigrateError::Layout { line: 8, name, .. } if name == "web"),
        "{e:?}"
    );
    assert!(e.to_string().contains("block style"), "{e}");
}

#[test]
fn block_scalars_in_the_converted_part_are_refused() {
    let text = "\
apiVersion: autoscaling/v2beta1
kind: HorizontalPodAutoscaler
metadata:
  name: web
spec:
  metrics:
  - type: External
    external:
      metricName: |-
        queue_depth
      targetValue: 5
";
    let e = error(text);
    assert!(matches!(&e, MigrateError::Layout { .. }), "{e:?}");
    assert!(e.to_string().contains("block scalar"), "{e}");
}

#[test]
fn conflicting_targets_are_refused() {
    let text = "\
apiVersion: autoscaling/v2beta1
kind: HorizontalPodAutoscaler
metadata:
  name: web
spec:
  metrics:
  - type: Resource
    resource:
      name: cpu
      targetAverageUtilization: 80
      targetAverageValue: 500m
";
    let e = error(text);
    assert!(matches!(&e, MigrateError::Invalid { .. }), "{e:?}");
    assert!(e.to_string().contains("keep one"), "{e}");
}

// ---- Ingress ------------------------------------------------------------------------------------------

#[test]
fn ingress_backends_name_a_service_and_paths_get_a_path_type() {
    let text = "\
apiVersion: extensions/v1beta1
kind: Ingress
metadata:
  name: web
  annotations:
    kubernetes.io/ingress.class: nginx
spec:
  backend:
    serviceName: default-http # fallback
    servicePort: 80
  tls:
  - hosts: [example.com]
    secretName: web-tls
  rules:
  - host: example.com
    http:
      paths:
      - path: /
        backend:
          serviceName: web   # the site
          servicePort: http
      - path: /api
        backend:
          servicePort: \"8080\"
          serviceName: api
  - http:
      paths:
        - backend:
            serviceName: catch-all
            servicePort: 80
";
    let (out, changes) = migrate(text);
    assert_eq!(
        out,
        "\
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  annotations:
    kubernetes.io/ingress.class: nginx
spec:
  defaultBackend:
    service:
      name: default-http # fallback
      port:
        number: 80
  tls:
  - hosts: [example.com]
    secretName: web-tls
  rules:
  - host: example.com
    http:
      paths:
      - path: /
        pathType: ImplementationSpecific
        backend:
          service:
            name: web   # the site
            port:
              name: http
      - path: /api
        pathType: ImplementationSpecific
        backend:
          service:
            port:
              number: 8080
            name: api
  - http:
      paths:
        - pathType: ImplementationSpecific
          backend:
            service:
              name: catch-all
              port:
                number: 80
"
    );
    assert_eq!(
        notes(&changes),
        [
            "spec.backend → spec.defaultBackend",
            "spec.defaultBackend: serviceName default-http, servicePort 80 → service.name, service.port.number",
            "rules[0].http.paths[0].backend: serviceName web, servicePort http → service.name, service.port.name",
            "rules[0].http.paths[0]: pathType ImplementationSpecific added (what a path without one meant before)",
            "rules[0].http.paths[1].backend: serviceName api, servicePort 8080 → service.name, service.port.number",
            "rules[0].http.paths[1]: pathType ImplementationSpecific added (what a path without one meant before)",
            "rules[1].http.paths[0].backend: serviceName catch-all, servicePort 80 → service.name, service.port.number",
            "rules[1].http.paths[0]: pathType ImplementationSpecific added (what a path without one meant before)",
        ]
    );
}

#[test]
fn an_ingress_at_the_end_of_a_file_without_a_final_line_break() {
    let text = "\
apiVersion: v1
kind: Service
metadata: {name: web}
---
apiVersion: networking.k8s.io/v1beta1
kind: Ingress
metadata:
  name: web
spec:
  rules:
  - http:
      paths:
      - pathType: Prefix
        path: /
        backend:
          serviceName: web
          servicePort: 80";
    let (out, _) = migrate(text);
    assert_eq!(
        out,
        "\
apiVersion: v1
kind: Service
metadata: {name: web}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
spec:
  rules:
  - http:
      paths:
      - pathType: Prefix
        path: /
        backend:
          service:
            name: web
            port:
              number: 80"
    );
}

#[test]
fn flow_style_backends_are_refused() {
    let text = "\
apiVersion: extensions/v1beta1
kind: Ingress
metadata:
  name: web
spec:
  rules:
  - http:
      paths:
      - path: /
        pathType: Prefix
        backend: {serviceName: web, servicePort: 80}
";
    let e = error(text);
    assert!(matches!(&e, MigrateError::Layout { line: 11, .. }), "{e:?}");
    assert!(e.to_string().contains("block style"), "{e}");
}

#[test]
fn shared_backends_are_refused() {
    let text = "\
apiVersion: extensions/v1beta1
kind: Ingress
metadata:
  name: web
spec:
  backend: &web
    serviceName: web
    servicePort: 80
  rules:
  - http:
      paths:
      - path: /
        pathType: Prefix
        backend: *web
";
    let e = error(text);
    assert!(matches!(&e, MigrateError::Layout { .. }), "{e:?}");
    let message = e.to_string();
    assert!(
        message.contains("anchor") || message.contains("alias"),
        "{message}"
    );
}

#[test]
fn unusual_key_orders_keep_their_order() {
    let text = "\
apiVersion: autoscaling/v2beta1
kind: HorizontalPodAutoscaler
metadata: {name: h}
spec:
  metrics:
  - resource:
      name: cpu
      targetAverageUtilization: 50
    type: Resource
  - type: Pods
    pods:
      selector:
        matchLabels: {a: b}
      targetAverageValue: 1
      metricName: x
---
apiVersion: extensions/v1beta1
kind: Ingress
metadata: {name: i}
spec:
  rules:
  - http:
      paths:
      - backend:
          serviceName: a
          servicePort: 80
        path: /x
";
    let (out, _) = migrate(text);
    assert_eq!(
        out,
        "\
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: h}
spec:
  metrics:
  - resource:
      name: cpu
      target:
        type: Utilization
        averageUtilization: 50
    type: Resource
  - type: Pods
    pods:
      metric:
        selector:
          matchLabels: {a: b}
        name: x
      target:
        type: AverageValue
        averageValue: 1
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: i}
spec:
  rules:
  - http:
      paths:
      - backend:
          service:
            name: a
            port:
              number: 80
        path: /x
        pathType: ImplementationSpecific
"
    );
}

// ---- what needs a person ------------------------------------------------------------------------------

#[test]
fn conversions_that_need_a_person_say_what_to_do() {
    for (doc, needle) in [
        (
            "apiVersion: apiextensions.k8s.io/v1beta1\nkind: CustomResourceDefinition\nmetadata:\n  \
             name: helmreleases.flux.weave.works\nspec:\n  version: v1beta1\n",
            "structural",
        ),
        (
            "apiVersion: policy/v1beta1\nkind: PodSecurityPolicy\nmetadata:\n  name: restricted\n",
            "Pod Security Admission",
        ),
        (
            "apiVersion: extensions/v1beta1\nkind: PodSecurityPolicy\nmetadata:\n  name: old\n",
            "Pod Security Admission",
        ),
        (
            "apiVersion: admissionregistration.k8s.io/v1beta1\nkind: ValidatingWebhookConfiguration\n\
             metadata:\n  name: check\n",
            "sideEffects",
        ),
        (
            "apiVersion: certificates.k8s.io/v1beta1\nkind: CertificateSigningRequest\nmetadata:\n  \
             name: me\n",
            "signerName",
        ),
        (
            "apiVersion: discovery.k8s.io/v1beta1\nkind: EndpointSlice\nmetadata:\n  name: web-abc\n",
            "nodeName",
        ),
    ] {
        let text = format!("apiVersion: batch/v1beta1\nkind: CronJob\nmetadata: {{name: ok}}\n---\n{doc}");
        let e = error(&text);
        assert!(
            matches!(&e, MigrateError::Manual { line: 5, .. }),
            "{doc}: {e:?}"
        );
        assert!(e.to_string().contains(needle), "{doc}: {e}");
    }
}

#[test]
fn invalid_yaml_is_reported() {
    assert!(matches!(
        migrate_text("apiVersion: batch/v1beta1\nkind: [unclosed\n"),
        Err(MigrateError::Yaml { .. })
    ));
}

// ---- the read-back ------------------------------------------------------------------------------------

fn who() -> Vec<(usize, Who)> {
    vec![(
        1,
        Who {
            line: 5,
            kind: "CronJob".to_owned(),
            name: "c".to_owned(),
        },
    )]
}

#[test]
fn a_splice_that_changes_more_than_the_reference_is_refused() {
    let text = "a: 1\n---\nb: 2\n";
    let expected: Vec<Value> = serde_saphyr::from_str_multiple(text).unwrap();
    let at = text.find('2').unwrap();
    let wrong = Splice {
        start: at,
        end: at + 1,
        with: "3".to_owned(),
    };
    let e = finish(text, &expected, vec![(1, wrong)], &who()).unwrap_err();
    assert!(
        matches!(&e, MigrateError::Verification { line: 5, detail, .. } if detail.contains("/b")),
        "{e:?}"
    );
    let bleeding = Splice {
        start: 3,
        end: 4,
        with: "9".to_owned(),
    };
    let e = finish(text, &expected, vec![(1, bleeding)], &who()).unwrap_err();
    assert!(
        matches!(&e, MigrateError::Verification { detail, .. } if detail.contains("document 1")),
        "{e:?}"
    );
}

#[test]
fn overlapping_splices_are_refused() {
    let text = "a: 1\n";
    let expected: Vec<Value> = serde_saphyr::from_str_multiple(text).unwrap();
    let splice = |start, end| Splice {
        start,
        end,
        with: String::new(),
    };
    let e = finish(
        text,
        &expected,
        vec![(0, splice(0, 3)), (0, splice(2, 4))],
        &who(),
    )
    .unwrap_err();
    assert!(
        matches!(&e, MigrateError::Verification { detail, .. } if detail.contains("overlapped")),
        "{e:?}"
    );
}
