// Validates rendered Kubernetes manifests (a multi-document YAML on stdin or
// in the files given) offline, the way an API server would, plus the rules
// sopflow's deployment promises. Exit 0: every object passes; 1: each
// problem printed as "Kind/name: path: message".
//
// 1. Schema: every object against the JSON schema generated from the
//    Kubernetes OpenAPI spec (kubernetes-models; cert-manager's CRDs with
//    @kubernetes-models/cert-manager): types, formats, required fields.
// 2. Strict fields: no field the API does not know (what kubectl's
//    --validate=strict rejects), from @kubernetes/client-node's models.
// 3. sopflow's rules: resources, probes, non-root, a PDB and an HPA per
//    Deployment, references that resolve, Services that select pods.
// 4. With SOPFLOW_BINARIES="router=<path>,notifier=<path>,...": every
//    SOPFLOW_* variable a container is given is one its binary reads
//    (CLI11 lists each option's variable in --help), so a typo in a
//    manifest cannot silently leave a setting at its default.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import { parseAllDocuments } from "yaml";
import * as k8s from "@kubernetes/client-node";

const problems = [];
const problem = (obj, path, message) =>
  problems.push(`${obj?.kind ?? "?"}/${obj?.metadata?.name ?? "?"}: ${path}: ${message}`);

// ------------------------------------------------------------------ input
const texts = process.argv.length > 2 ? process.argv.slice(2).map((f) => fs.readFileSync(f, "utf8"))
                                      : [fs.readFileSync(0, "utf8")];
const objects = [];
for (const text of texts)
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length) { problems.push(`YAML: ${doc.errors[0].message}`); continue; }
    const obj = doc.toJS();
    // The API server decodes base64 ignoring line breaks (Go's encoding/json);
    // kustomize v5 folds long Secret values: unfold them as it would.
    if (obj?.kind === "Secret" && obj.data)
      for (const k of Object.keys(obj.data)) obj.data[k] = String(obj.data[k]).replace(/\s+/g, "");
    if (obj) objects.push(obj);
  }
if (objects.length === 0) problems.push("no objects to validate");

// ------------------------------------------------------------------ 1. schema
async function modelFor(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  const candidates = group.endsWith("cert-manager.io")
    ? [`@kubernetes-models/cert-manager/${group}/${version}/${kind}`]
    : [`kubernetes-models/${group ? group + "/" : ""}${version}/${kind}`];
  for (const spec of candidates) {
    try { return (await import(spec))[kind]; } catch { /* next */ }
  }
  return null;
}

for (const obj of objects) {
  if (!obj.apiVersion || !obj.kind) { problem(obj, "", "apiVersion and kind are required"); continue; }
  const Model = await modelFor(obj.apiVersion, obj.kind);
  if (!Model) { problem(obj, "apiVersion", `unknown kind ${obj.apiVersion} ${obj.kind}`); continue; }
  try {
    new Model(obj).validate();
  } catch (e) {
    for (const err of e.errors ?? [{ instancePath: "", message: e.message }])
      problem(obj, err.instancePath || "/", err.message + (err.params?.missingProperty ? ` (${err.params.missingProperty})` : ""));
  }
}

// ------------------------------------------------------------------ 2. strict fields
function typeMapOf(typeName) {
  const cls = k8s[typeName];
  return cls && typeof cls.getAttributeTypeMap === "function" ? cls.getAttributeTypeMap() : null;
}
function checkFields(obj, value, typeName, path) {
  if (value === null || value === undefined) return;
  const array = /^Array<(.+)>$/.exec(typeName);
  if (array) {
    if (Array.isArray(value)) value.forEach((v, i) => checkFields(obj, v, array[1], `${path}/${i}`));
    return;
  }
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(typeName);
  if (map) {
    for (const [k, v] of Object.entries(value ?? {})) checkFields(obj, v, map[1], `${path}/${k}`);
    return;
  }
  const attributes = typeMapOf(typeName);
  if (!attributes || typeof value !== "object" || Array.isArray(value)) return;
  const known = new Map(attributes.map((a) => [a.baseName, a.type]));
  for (const [k, v] of Object.entries(value)) {
    if (!known.has(k)) problem(obj, `${path}/${k}`, `unknown field "${k}" in ${typeName}`);
    else checkFields(obj, v, known.get(k), `${path}/${k}`);
  }
}
for (const obj of objects) {
  if (!obj.apiVersion || !obj.kind) continue;
  const [group, version] = obj.apiVersion.includes("/") ? obj.apiVersion.split("/") : ["core", obj.apiVersion];
  if (group.endsWith("cert-manager.io")) continue;  // CRDs: schema only
  const v = version.charAt(0).toUpperCase() + version.slice(1);
  const typeName = [v + obj.kind, `${v}${group.split(".")[0].replace(/^./, (c) => c.toUpperCase())}${obj.kind}`]
    .find((t) => typeMapOf(t));
  if (typeName) checkFields(obj, obj, typeName, "");
  else problem(obj, "", `no strict model for ${obj.apiVersion} ${obj.kind}`);
}

// ------------------------------------------------------------------ 3. sopflow's rules
const byKind = (kind) => objects.filter((o) => o.kind === kind);
const names = (kind) => new Set(byKind(kind).map((o) => o.metadata?.name));
const matches = (selector, labels) => Object.entries(selector ?? {}).every(([k, v]) => labels?.[k] === v);
// Secrets made by cert-manager from a Certificate in the output.
const secrets = new Set([...names("Secret"), ...byKind("Certificate").map((c) => c.spec?.secretName)]);
const configMaps = names("ConfigMap");
const externalSecrets = new Set((process.env.EXTERNAL_SECRETS ?? "").split(",").filter(Boolean));

function checkPodSpec(owner, spec, path) {
  if (spec?.securityContext?.runAsNonRoot !== true) problem(owner, `${path}/securityContext/runAsNonRoot`, "must be true");
  for (const [i, c] of (spec?.containers ?? []).entries()) {
    const at = `${path}/containers/${i}`;
    for (const kind of ["requests", "limits"])
      for (const r of ["cpu", "memory"])
        if (!c.resources?.[kind]?.[r]) problem(owner, `${at}/resources/${kind}/${r}`, "is required");
    if (c.securityContext?.allowPrivilegeEscalation !== false)
      problem(owner, `${at}/securityContext/allowPrivilegeEscalation`, "must be false");
    for (const probe of ["readinessProbe", "livenessProbe"])
      if (!c[probe]) problem(owner, `${at}/${probe}`, "is required");
    for (const from of c.envFrom ?? []) {
      if (from.configMapRef && !configMaps.has(from.configMapRef.name) && !from.configMapRef.optional)
        problem(owner, `${at}/envFrom`, `ConfigMap ${from.configMapRef.name} does not exist`);
      if (from.secretRef && !secrets.has(from.secretRef.name) && !from.secretRef.optional &&
          !externalSecrets.has(from.secretRef.name))
        problem(owner, `${at}/envFrom`, `Secret ${from.secretRef.name} does not exist`);
    }
    for (const e of c.env ?? []) {
      const ref = e.valueFrom?.secretKeyRef;
      if (ref && !secrets.has(ref.name) && !externalSecrets.has(ref.name))
        problem(owner, `${at}/env/${e.name}`, `Secret ${ref.name} does not exist`);
    }
  }
  for (const v of spec?.volumes ?? []) {
    if (v.configMap && !configMaps.has(v.configMap.name)) problem(owner, `${path}/volumes/${v.name}`, `ConfigMap ${v.configMap.name} does not exist`);
    if (v.secret && !secrets.has(v.secret.secretName) && !externalSecrets.has(v.secret.secretName))
      problem(owner, `${path}/volumes/${v.name}`, `Secret ${v.secret.secretName} does not exist`);
    if (v.persistentVolumeClaim && !names("PersistentVolumeClaim").has(v.persistentVolumeClaim.claimName))
      problem(owner, `${path}/volumes/${v.name}`, `PersistentVolumeClaim ${v.persistentVolumeClaim.claimName} does not exist`);
  }
}

for (const w of [...byKind("Deployment"), ...byKind("StatefulSet")]) {
  const labels = w.spec?.template?.metadata?.labels;
  if (!matches(w.spec?.selector?.matchLabels, labels)) problem(w, "/spec/selector", "does not select its own pods");
  checkPodSpec(w, w.spec?.template?.spec, "/spec/template/spec");
  if (!byKind("PodDisruptionBudget").some((p) => matches(p.spec?.selector?.matchLabels, labels)))
    if (w.kind === "Deployment" || (w.spec?.replicas ?? 1) > 1) problem(w, "", "no PodDisruptionBudget covers it");
}
for (const d of byKind("Deployment")) {
  if (!byKind("HorizontalPodAutoscaler").some((h) => h.spec?.scaleTargetRef?.kind === "Deployment" &&
                                                     h.spec?.scaleTargetRef?.name === d.metadata.name))
    problem(d, "", "no HorizontalPodAutoscaler scales it");
  for (const [i, c] of (d.spec?.template?.spec?.containers ?? []).entries())
    for (const probe of ["readinessProbe", "livenessProbe"])
      if (c[probe] && !c[probe].grpc) problem(d, `/spec/template/spec/containers/${i}/${probe}`, "must be a gRPC probe (grpc.health.v1)");
}
for (const s of byKind("Service")) {
  const pods = [...byKind("Deployment"), ...byKind("StatefulSet")]
    .filter((w) => matches(s.spec?.selector, w.spec?.template?.metadata?.labels));
  if (pods.length === 0) { problem(s, "/spec/selector", "selects no pods"); continue; }
  const portNames = new Set(pods.flatMap((w) => w.spec.template.spec.containers.flatMap((c) => (c.ports ?? []).map((p) => p.name))));
  for (const p of s.spec?.ports ?? [])
    if (typeof p.targetPort === "string" && !portNames.has(p.targetPort))
      problem(s, `/spec/ports/${p.name}`, `targetPort ${p.targetPort} is no container port`);
}
for (const h of byKind("HorizontalPodAutoscaler"))
  if (!names(h.spec?.scaleTargetRef?.kind).has(h.spec?.scaleTargetRef?.name))
    problem(h, "/spec/scaleTargetRef", `${h.spec?.scaleTargetRef?.name} does not exist`);

// ------------------------------------------------------------------ 4. settings the binaries read
const binaries = Object.fromEntries((process.env.SOPFLOW_BINARIES ?? "").split(",").filter(Boolean).map((kv) => kv.split("=")));
for (const d of byKind("Deployment"))
  for (const [i, c] of (d.spec?.template?.spec?.containers ?? []).entries()) {
    if (!binaries[c.name]) continue;
    const help = execFileSync(binaries[c.name], ["--help"], { encoding: "utf8" });
    const given = [...(c.env ?? []).map((e) => e.name),
                   ...(c.envFrom ?? []).flatMap((f) => Object.keys(byKind("ConfigMap").find((m) => m.metadata.name === f.configMapRef?.name)?.data ?? {}))];
    for (const name of given.filter((n) => n.startsWith("SOPFLOW_")))
      if (!help.includes(`(Env:${name})`)) problem(d, `/spec/template/spec/containers/${i}/env/${name}`, `${c.name} reads no ${name}`);
  }

// ------------------------------------------------------------------ verdict
if (problems.length) {
  for (const p of problems) console.error(p);
  console.error(`${problems.length} problem(s) in ${objects.length} objects`);
  process.exit(1);
}
const kinds = {};
for (const o of objects) kinds[o.kind] = (kinds[o.kind] ?? 0) + 1;
console.log(`${objects.length} objects valid: ` + Object.entries(kinds).map(([k, n]) => `${n} ${k}`).join(", "));
