// Validates rendered Kubernetes manifests (multi-document YAML) in three passes:
//  1. schema: every object against the Kubernetes OpenAPI schema of its kind
//     (kubernetes-models; Prometheus Operator kinds from its companion package);
//  2. strict: every object written as a TypeScript literal of its model's type
//     and type-checked, which rejects unknown fields at any depth (the schemas
//     themselves allow them, as the API server's pruning would hide them);
//  3. policy: what Parley's deployment promises (labels, probes, security
//     context, resources, drain timing, references between objects).
//
// usage: node validate.cjs RENDERED.yaml WORK_DIR [--profile dev|prod|none]
// Needs NODE_PATH to point at the node_modules installed from package.json.
// Prints one line per problem and "manifests: OK" or "manifests: FAIL".
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const { execFileSync } = require("node:child_process");
const YAML = require("yaml");

const [renderedPath, workDir, ...rest] = process.argv.slice(2);
if (!renderedPath || !workDir) {
  console.error("usage: node validate.cjs RENDERED.yaml WORK_DIR [--profile dev|prod|none]");
  process.exit(2);
}
const profileIndex = rest.indexOf("--profile");
const profile = profileIndex >= 0 ? rest[profileIndex + 1] : "none";

const problems = [];
const problem = (object, message) => {
  const where = object ? `${object.kind}/${object.metadata?.name ?? "?"}` : "manifests";
  problems.push(`${where}: ${message}`);
};

// ---- parse ------------------------------------------------------------------
const objects = [];
for (const document of YAML.parseAllDocuments(fs.readFileSync(renderedPath, "utf8"))) {
  if (document.errors.length > 0) {
    problem(null, `YAML error: ${document.errors[0].message}`);
    continue;
  }
  const value = document.toJS();
  if (value !== null && value !== undefined) {
    objects.push(value);
  }
}
if (objects.length === 0) {
  problem(null, "no objects rendered");
}

// ---- 1. schema --------------------------------------------------------------
// apiVersion + kind → the module holding the model and its TypeScript type.
function modelModule(object) {
  const { apiVersion, kind } = object;
  if (typeof apiVersion !== "string" || typeof kind !== "string") {
    return null;
  }
  if (apiVersion.startsWith("monitoring.coreos.com/")) {
    return `@kubernetes-models/prometheus-operator/${apiVersion}/${kind}`;
  }
  return `kubernetes-models/${apiVersion}/${kind}`;
}

const typed = [];  // [object, module] for the strict pass.
for (const object of objects) {
  const module = modelModule(object);
  let Model;
  try {
    Model = module && require(module)[object.kind];
  } catch (error) {
    Model = undefined;
  }
  if (!Model) {
    problem(object, `unknown apiVersion/kind ${object.apiVersion}/${object.kind}`);
    continue;
  }
  try {
    new Model(object).validate();
  } catch (error) {
    problem(object, `schema: ${error.message}`);
  }
  typed.push([object, module]);
}

// ---- 2. strict --------------------------------------------------------------
if (typed.length > 0) {
  const lines = [];
  typed.forEach(([object, module], i) => {
    lines.push(`import type { I${object.kind} as T${i} } from ${JSON.stringify(module)};`);
  });
  typed.forEach(([object], i) => {
    // One line per object so a diagnostic's line number names the object.
    lines.push(`export const o${i}: T${i} = ${JSON.stringify(object)};`);
  });
  fs.mkdirSync(workDir, { recursive: true });
  const source = path.join(workDir, "manifests.ts");
  fs.writeFileSync(source, lines.join("\n") + "\n");
  // The models live wherever NODE_PATH put them, not beside the work dir.
  const nodeModules = path.dirname(path.dirname(require.resolve("kubernetes-models/package.json")));
  const config = path.join(workDir, "tsconfig.json");
  fs.writeFileSync(config, JSON.stringify({
    compilerOptions: {
      noEmit: true, strict: true, skipLibCheck: true, module: "commonjs",
      moduleResolution: "node10", target: "es2020", types: [],
      baseUrl: ".", paths: { "*": [path.join(nodeModules, "*")] },
    },
    files: ["manifests.ts"],
  }, null, 2));
  const tsc = require.resolve("typescript/bin/tsc");
  let output = "";
  try {
    execFileSync(process.execPath, [tsc, "-p", config], { encoding: "utf8", stdio: "pipe" });
  } catch (error) {
    output = `${error.stdout ?? ""}${error.stderr ?? ""}`;
    if (!output.includes("error TS")) {
      output = `error TS0: tsc failed: ${output || error.message}`;
    }
  }
  for (const line of output.split("\n").filter((l) => l.includes("error TS"))) {
    const match = line.match(/manifests\.ts\((\d+),\d+\)/);
    const index = match ? Number(match[1]) - typed.length - 1 : -1;
    const object = index >= 0 && index < typed.length ? typed[index][0] : null;
    problem(object, `strict: ${line.replace(/^.*error TS\d+: /, "")}`);
  }
}

// ---- 3. policy --------------------------------------------------------------
const kRequiredLabels = ["name", "instance", "version", "component", "part-of", "managed-by"]
  .map((l) => `app.kubernetes.io/${l}`);

function checkLabels(object, labels, where) {
  for (const label of kRequiredLabels) {
    if (typeof labels?.[label] !== "string" || labels[label] === "") {
      problem(object, `${where} lacks label ${label}`);
    }
  }
}

const byKind = (kind) => objects.filter((o) => o.kind === kind);
const find = (kind, name) => objects.find((o) => o.kind === kind && o.metadata?.name === name);
const matches = (selector, labels) =>
  Object.entries(selector ?? {}).every(([k, v]) => labels?.[k] === v);
const podTemplates = () => byKind("Deployment").map((d) => [d, d.spec?.template]);

for (const object of objects) {
  checkLabels(object, object.metadata?.labels, "metadata");
}

// ConfigMap data as the pod sees it (envFrom + env), for timing checks.
function podEnv(template) {
  const env = {};
  for (const container of template?.spec?.containers ?? []) {
    for (const from of container.envFrom ?? []) {
      const configMap = from.configMapRef && find("ConfigMap", from.configMapRef.name);
      if (from.configMapRef && !configMap) {
        problem(null, `envFrom names missing ConfigMap ${from.configMapRef.name}`);
      }
      Object.assign(env, configMap?.data ?? {});
    }
    for (const variable of container.env ?? []) {
      env[variable.name] = variable.value ?? "(from secret)";
    }
  }
  return env;
}

for (const [deployment, template] of podTemplates()) {
  const pod = template?.spec ?? {};
  checkLabels(deployment, template?.metadata?.labels, "pod template");
  if (!matches(deployment.spec?.selector?.matchLabels, template?.metadata?.labels)) {
    problem(deployment, "selector does not match its pod template");
  }
  // The API server refuses this combination; the schema does not.
  if (deployment.spec?.strategy?.type === "Recreate" && deployment.spec.strategy.rollingUpdate) {
    problem(deployment, "strategy Recreate must not carry rollingUpdate");
  }
  if (pod.securityContext?.runAsNonRoot !== true) {
    problem(deployment, "pod securityContext.runAsNonRoot is not true");
  }
  if (pod.automountServiceAccountToken !== false) {
    problem(deployment, "pods mount a service account token they do not need");
  }
  if (pod.serviceAccountName && !find("ServiceAccount", pod.serviceAccountName)) {
    problem(deployment, `ServiceAccount ${pod.serviceAccountName} is not rendered`);
  }
  const name = deployment.metadata?.name ?? "";
  for (const container of pod.containers ?? []) {
    const security = container.securityContext ?? {};
    if (security.readOnlyRootFilesystem !== true) {
      problem(deployment, `container ${container.name}: root filesystem is writable`);
    }
    if (security.allowPrivilegeEscalation !== false) {
      problem(deployment, `container ${container.name}: privilege escalation allowed`);
    }
    if (!(security.capabilities?.drop ?? []).includes("ALL")) {
      problem(deployment, `container ${container.name}: capabilities not dropped (ALL)`);
    }
    for (const kind of ["requests", "limits"]) {
      for (const resource of ["cpu", "memory"]) {
        if (container.resources?.[kind]?.[resource] === undefined) {
          problem(deployment, `container ${container.name}: no ${kind}.${resource}`);
        }
      }
    }
    const grpcService = (container.ports ?? []).some((p) => p.name === "grpc");
    for (const probe of ["livenessProbe", "readinessProbe"]) {
      const spec = container[probe];
      if (!spec) {
        problem(deployment, `container ${container.name}: no ${probe}`);
      } else if (grpcService && !spec.grpc) {
        problem(deployment, `container ${container.name}: ${probe} is not a native grpc probe`);
      } else if (!grpcService) {
        const wanted = probe === "livenessProbe" ? "/healthz" : "/readyz";
        if (spec.httpGet?.path !== wanted) {
          problem(deployment, `container ${container.name}: ${probe} is not GET ${wanted}`);
        }
      }
    }
  }
  if (name === "parley-edge") {
    // SIGTERM comes after preStop; the edge then drains for its grace period.
    const env = podEnv(template);
    const drainSeconds = Number(env.PARLEY_DRAIN_GRACE_MS ?? "10000") / 1000;
    const preStop = pod.containers?.[0]?.lifecycle?.preStop?.exec?.command ?? [];
    const preStopSeconds = preStop[0]?.endsWith("sleep") ? Number(preStop[1]) : 0;
    const grace = pod.terminationGracePeriodSeconds ?? 30;
    if (!(grace > drainSeconds + preStopSeconds)) {
      problem(deployment, `terminationGracePeriodSeconds ${grace} is not above preStop ` +
        `${preStopSeconds}s + drain grace ${drainSeconds}s`);
    }
    for (const [flag, service] of [["PARLEY_INFERENCE", "parley-inference-headless"],
      ["PARLEY_PERSISTENCE", "parley-persistence-headless"]]) {
      if (!String(env[flag] ?? "").startsWith(`dns:///${service}:`)) {
        problem(deployment, `${flag} should resolve the headless Service ${service}`);
      }
    }
  } else if (name) {
    const env = podEnv(template);
    if (!(Number(env.PARLEY_MAX_CONNECTION_AGE_MS) > 0)) {
      problem(deployment, "PARLEY_MAX_CONNECTION_AGE_MS not set: streams never rebalance");
    }
  }
}

for (const service of byKind("Service")) {
  const selected = podTemplates().filter(([, t]) => matches(service.spec?.selector, t?.metadata?.labels));
  if (selected.length === 0) {
    problem(service, "selects no pods");
  }
  for (const port of service.spec?.ports ?? []) {
    if (typeof port.targetPort === "string" && !selected.some(([, t]) =>
      (t.spec?.containers ?? []).some((c) => (c.ports ?? []).some((p) => p.name === port.targetPort)))) {
      problem(service, `targetPort ${port.targetPort} is no container port`);
    }
  }
}
for (const deployment of byKind("Deployment").filter((d) => d.metadata?.name !== "parley-edge")) {
  const headless = find("Service", `${deployment.metadata.name}-headless`);
  if (!headless || headless.spec?.clusterIP !== "None") {
    problem(deployment, "no headless Service for client-side balancing");
  }
}
for (const hpa of byKind("HorizontalPodAutoscaler")) {
  if (!find(hpa.spec?.scaleTargetRef?.kind, hpa.spec?.scaleTargetRef?.name)) {
    problem(hpa, "scales an object that is not rendered");
  }
}
for (const pdb of byKind("PodDisruptionBudget")) {
  if (!podTemplates().some(([, t]) => matches(pdb.spec?.selector?.matchLabels, t?.metadata?.labels))) {
    problem(pdb, "selects no pods");
  }
}

// ---- profiles ---------------------------------------------------------------
const deploymentNames = ["parley-edge", "parley-inference", "parley-persistence"];
function expectCount(kind, count) {
  if (byKind(kind).length !== count) {
    problem(null, `expected ${count} ${kind}, found ${byKind(kind).length}`);
  }
}
if (profile === "dev" || profile === "prod") {
  for (const name of deploymentNames) {
    for (const kind of ["Deployment", "ServiceAccount", "Service"]) {
      if (!find(kind, name)) {
        problem(null, `${kind} ${name} missing`);
      }
    }
  }
  const edgeEnv = podEnv(find("Deployment", "parley-edge")?.spec?.template);
  if (edgeEnv.PARLEY_ALLOW_ANONYMOUS !== (profile === "dev" ? "true" : "false")) {
    problem(null, `PARLEY_ALLOW_ANONYMOUS must be ${profile === "dev"} in ${profile}`);
  }
  const storeEnv = podEnv(find("Deployment", "parley-persistence")?.spec?.template);
  const volumes = find("Deployment", "parley-persistence")?.spec?.template?.spec?.volumes ?? [];
  if (profile === "dev") {
    for (const name of deploymentNames) {
      if (find("Deployment", name)?.spec?.replicas !== 1) {
        problem(null, `${name} must run one replica in dev`);
      }
    }
    const claim = volumes.find((v) => v.name === "data")?.persistentVolumeClaim?.claimName;
    if (!claim || !find("PersistentVolumeClaim", claim)) {
      problem(null, "the SQLite data volume is not a rendered PersistentVolumeClaim");
    }
    // One SQLite writer on a ReadWriteOnce volume: the old pod must stop first.
    if (find("Deployment", "parley-persistence")?.spec?.strategy?.type !== "Recreate") {
      problem(null, "dev persistence (SQLite) must roll out with strategy Recreate");
    }
    if (!String(storeEnv.PARLEY_STORE).startsWith("sqlite:/var/lib/parley/")) {
      problem(null, "dev store must be SQLite on the data volume");
    }
  } else {
    const store = find("Deployment", "parley-persistence")?.spec?.template?.spec?.containers?.[0]
      ?.env?.find((e) => e.name === "PARLEY_STORE");
    if (!store?.valueFrom?.secretKeyRef?.name) {
      problem(null, "prod store connection must come from a Secret");
    }
    for (const name of ["parley-edge", "parley-inference"]) {
      if (!byKind("HorizontalPodAutoscaler").some((h) => h.spec?.scaleTargetRef?.name === name)) {
        problem(null, `no HorizontalPodAutoscaler for ${name}`);
      }
    }
    // Several edges and persistence replicas by default: rooms meet across them through
    // persistence, and no single pod holds a conversation's viewers.
    for (const [name, least] of [["parley-edge", 3], ["parley-persistence", 2]]) {
      const replicas = find("Deployment", name)?.spec?.replicas;
      if (!(replicas >= least)) {
        problem(null, `${name} must start with at least ${least} replicas in prod, not ${replicas}`);
      }
      const hpa = byKind("HorizontalPodAutoscaler").find((h) => h.spec?.scaleTargetRef?.name === name);
      if (hpa && !(hpa.spec?.minReplicas >= 2)) {
        problem(null, `the HorizontalPodAutoscaler of ${name} must keep at least 2 replicas`);
      }
    }
    // The edge balances its calls and conversation watches over every persistence pod.
    if (!String(edgeEnv.PARLEY_PERSISTENCE).startsWith("dns:///parley-persistence-headless")) {
      problem(null, "the edge must reach persistence through its headless Service (dns:///)");
    }
    expectCount("PodDisruptionBudget", 3);
    expectCount("ServiceMonitor", 3);
    expectCount("PrometheusRule", 1);
    // Only the edge may reach inference and persistence (gRPC port).
    for (const name of ["parley-inference", "parley-persistence"]) {
      const policies = byKind("NetworkPolicy").filter((p) =>
        matches(p.spec?.podSelector?.matchLabels, find("Deployment", name)?.spec?.template?.metadata?.labels));
      if (!policies.some((p) => Object.keys(p.spec?.podSelector?.matchLabels ?? {}).length > 0 &&
        (p.spec?.policyTypes ?? []).includes("Ingress") && p.spec?.ingress === undefined)) {
        problem(null, `${name} is not covered by a default-deny ingress policy`);
      }
      for (const policy of policies) {
        for (const rule of policy.spec?.ingress ?? []) {
          const grpc = (rule.ports ?? []).some((p) => p.port === 50051 || p.port === "grpc");
          const onlyEdge = (rule.from ?? []).length > 0 && rule.from.every((f) =>
            f.podSelector?.matchLabels?.["app.kubernetes.io/name"] === "parley-edge" && !f.namespaceSelector);
          if (grpc && !onlyEdge) {
            problem(policy, `lets something other than the edge reach ${name}'s gRPC port`);
          }
          if ((rule.ports ?? []).length === 0) {
            problem(policy, "an ingress rule without ports opens every port");
          }
        }
      }
    }
  }
}

for (const line of problems) {
  console.log(`manifests: ${line}`);
}
console.log(`manifests: ${objects.length} objects checked, ${problems.length} problems`);
console.log(problems.length === 0 ? "manifests: OK" : "manifests: FAIL");
process.exit(problems.length === 0 ? 0 : 1);
