// Checks the Grafana dashboard: well-formed panels, and every query valid
// PromQL (each is written as a recording rule and handed to promtool). Prints
// the metric names the queries use, one per line as "metric: NAME", so the
// caller can compare them with the documentation.
// usage: node check_dashboard.cjs DASHBOARD.json WORK_DIR
"use strict";
const fs = require("node:fs");
const path = require("node:path");
const { execFileSync } = require("node:child_process");

const [dashboardPath, workDir] = process.argv.slice(2);
const problems = [];
let dashboard;
try {
  dashboard = JSON.parse(fs.readFileSync(dashboardPath, "utf8"));
} catch (error) {
  console.log(`dashboard: FAIL: ${error.message}`);
  process.exit(1);
}
if (!dashboard.uid || !dashboard.title) {
  problems.push("dashboard needs a uid and a title");
}
const datasource = (dashboard.templating?.list ?? []).find((v) => v.type === "datasource");
if (!datasource || datasource.query !== "prometheus") {
  problems.push("dashboard needs a Prometheus data source variable");
}
const ids = new Set();
const queries = [];
for (const panel of dashboard.panels ?? []) {
  if (ids.has(panel.id)) {
    problems.push(`duplicate panel id ${panel.id}`);
  }
  ids.add(panel.id);
  if (panel.type === "row") {
    continue;
  }
  if (!panel.title || !panel.gridPos) {
    problems.push(`panel ${panel.id} needs a title and a position`);
  }
  if (panel.datasource?.uid !== `\${${datasource?.name}}`) {
    problems.push(`panel "${panel.title}" does not use the data source variable`);
  }
  if ((panel.targets ?? []).length === 0) {
    problems.push(`panel "${panel.title}" has no query`);
  }
  for (const target of panel.targets ?? []) {
    queries.push([panel.title, target.expr ?? ""]);
  }
}

// Grafana's interval variables are not PromQL; promtool sees a fixed range.
const rules = queries.map(([title, expr], i) => ({
  record: `dashboard:query_${i}`,
  expr: expr.replaceAll("$__rate_interval", "5m").replaceAll("$__interval", "1m"),
}));
fs.mkdirSync(workDir, { recursive: true });
const rulesPath = path.join(workDir, "dashboard-queries.rules.json");
// JSON is YAML, so promtool reads this file as a rules file.
fs.writeFileSync(rulesPath, JSON.stringify({ groups: [{ name: "dashboard", rules }] }, null, 1));
try {
  execFileSync("promtool", ["check", "rules", rulesPath], { encoding: "utf8", stdio: "pipe" });
} catch (error) {
  const output = `${error.stdout ?? ""}${error.stderr ?? ""}` || error.message;
  for (const line of output.split("\n").filter((l) => l.trim() !== "")) {
    problems.push(`promtool: ${line.trim()}`);
  }
}

const metrics = new Set();
for (const [, expr] of queries) {
  for (const name of expr.match(/\bparley_[a-z0-9_]+/g) ?? []) {
    metrics.add(name.replace(/_(bucket|count|sum)$/, ""));
  }
}
for (const name of [...metrics].sort()) {
  console.log(`metric: ${name}`);
}
for (const line of problems) {
  console.log(`dashboard: ${line}`);
}
console.log(`dashboard: ${queries.length} queries checked, ${problems.length} problems`);
console.log(problems.length === 0 ? "dashboard: OK" : "dashboard: FAIL");
process.exit(problems.length === 0 ? 0 : 1);
