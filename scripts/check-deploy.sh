#!/usr/bin/env bash
# Checks deploy/: every kustomize overlay renders (kubectl kustomize), the sources and the
# rendered manifests pass yamllint (deploy/.yamllint), the alert rules pass `promtool check rules`
# and their unit tests `promtool test rules`, and the PrometheusRule CRD carries exactly the
# groups of the plain rules file (the one source of truth).
# Usage: scripts/check-deploy.sh          check everything (exit 1 on the first problem)
#        scripts/check-deploy.sh --write  regenerate deploy/k8s/monitoring/prometheusrule.yaml
#                                         from prometheus-rules.yaml, then check
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
k8s=deploy/k8s
rules=$k8s/monitoring/prometheus-rules.yaml
crd=$k8s/monitoring/prometheusrule.yaml

for tool in kubectl promtool yamllint python3; do
  command -v "$tool" >/dev/null || { echo "check-deploy: $tool is missing (kubectl from the machine image; apt-get install prometheus yamllint)" >&2; exit 2; }
done

# The CRD is the plain rules file wrapped in a PrometheusRule; PyYAML comes with yamllint.
render_crd() {
  python3 - "$rules" <<'PY'
import sys, yaml
with open(sys.argv[1], encoding="utf-8") as f:
    rules = yaml.safe_load(f)
crd = {
    "apiVersion": "monitoring.coreos.com/v1",
    "kind": "PrometheusRule",
    "metadata": {"name": "replicator", "labels": {"app.kubernetes.io/name": "replicator"}},
    "spec": rules,
}
print("# GENERATED from prometheus-rules.yaml by scripts/check-deploy.sh --write: edit that file, not this one.")
print("---")
sys.stdout.write(yaml.safe_dump(crd, sort_keys=False, width=100, allow_unicode=True))
PY
}

if [ "${1:-}" = "--write" ]; then
  render_crd > "$crd"
  echo "wrote $crd"
fi

fail() { echo "check-deploy: $*" >&2; exit 1; }

echo "== PrometheusRule matches $rules"
if ! diff -u "$crd" <(render_crd) >/dev/null; then
  diff -u "$crd" <(render_crd) | head -40 >&2 || true
  fail "$crd is out of date with $rules: run scripts/check-deploy.sh --write"
fi

echo "== promtool check rules"
promtool check rules "$rules" || fail "promtool check rules failed for $rules"

echo "== promtool test rules"
promtool test rules $k8s/tests/*.test.yaml || fail "promtool test rules failed"

echo "== dashboard PromQL parses (promtool check rules on each panel's expression)"
dash_rules=$(mktemp)
trap 'rm -f "$dash_rules"' EXIT
python3 - "$k8s/monitoring/grafana-dashboard.json" > "$dash_rules" <<'PY'
import json, sys, yaml
dash = json.load(open(sys.argv[1], encoding="utf-8"))
exprs = []
def walk(panels):
    for p in panels:
        walk(p.get("panels", []))
        for t in p.get("targets", []):
            exprs.append((p["title"], t["expr"]))
walk(dash["panels"])
# Grafana's variables become what they stand for at query time.
subst = lambda e: e.replace("$__rate_interval", "5m").replace("$namespace", ".*")
rules = [{"record": f"dashboard:panel_{i}", "expr": subst(e)} for i, (_, e) in enumerate(exprs)]
sys.stderr.write(f"{len(rules)} expressions\n")
yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, sys.stdout)
PY
promtool check rules "$dash_rules" >/dev/null || { promtool check rules "$dash_rules" >&2 || true; fail "a dashboard expression does not parse"; }

echo "== yamllint (sources)"
yamllint -c deploy/.yamllint --strict deploy || fail "yamllint found problems in deploy/"

# The rendered manifests embed the config file and the dashboard JSON as long strings: the same
# rules as the sources except the line length.
rendered_lint="{extends: default, rules: {line-length: disable, document-start: disable,
  truthy: {allowed-values: ['true', 'false'], check-keys: false},
  indentation: {spaces: 2, indent-sequences: consistent}}}"
out="$root/artifacts/deploy"
rm -rf "$out"
mkdir -p "$out"
for overlay in $k8s/overlays/*/; do
  name=$(basename "$overlay")
  echo "== kubectl kustomize $overlay"
  kubectl kustomize "$overlay" > "$out/$name.yaml" || fail "overlay $name does not render"
  [ -s "$out/$name.yaml" ] || fail "overlay $name renders nothing"
  yamllint -d "$rendered_lint" --strict "$out/$name.yaml" || fail "rendered overlay $name ($out/$name.yaml) fails yamllint"
done
echo "deploy checks passed; rendered manifests in ${out#"$root"/}/"
