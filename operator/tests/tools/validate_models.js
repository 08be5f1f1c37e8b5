// Validates Kubernetes objects of third-party kinds (Argo CD, Flux, prometheus-operator)
// against the schemas generated from those projects' CRDs, as packaged by @kubernetes-models.
//
//   node validate_models.js DIR/node_modules OBJECTS.json
//
// OBJECTS.json is an array of objects. Prints one line per object and exits 1 when any is
// invalid or of a kind with no known schema (never a silent pass). Run by operator/tests/.
"use strict";
const fs = require("fs");
const path = require("path");
const { pathToFileURL } = require("url");

const packages = {
  "argoproj.io": "@kubernetes-models/argo-cd",
  "kustomize.toolkit.fluxcd.io": "@kubernetes-models/flux-cd",
  "source.toolkit.fluxcd.io": "@kubernetes-models/flux-cd",
  "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
};

// The model of KIND in GROUP/VERSION, by file: some of these packages are ES modules whose
// "exports" only allow `import`, and ES module resolution ignores NODE_PATH.
async function model(modules, pkg, group, version, kind) {
  const base = path.join(modules, pkg, group, version, kind);
  const file = [".mjs", ".js"].map((ext) => base + ext).find((f) => fs.existsSync(f));
  if (!file) return undefined;
  const module = await import(pathToFileURL(file).href);
  return module[kind] || (module.default && module.default[kind]);
}

async function main() {
  const modules = process.argv[2];
  const objects = JSON.parse(fs.readFileSync(process.argv[3], "utf8"));
  let problems = 0;
  for (const object of objects) {
    const name = `${object.kind}/${object.metadata && object.metadata.name}`;
    const [group, version] = String(object.apiVersion).split("/");
    const pkg = packages[group];
    let Model;
    try {
      Model = pkg && (await model(modules, pkg, group, version, object.kind));
    } catch (e) {
      console.log(`${name}: loading the schema of ${object.apiVersion} ${object.kind}: ${e.message}`);
      problems++;
      continue;
    }
    if (!Model) {
      console.log(`${name}: no schema for ${object.apiVersion} ${object.kind}`);
      problems++;
      continue;
    }
    try {
      new Model(object).validate();
      console.log(`${name}: valid ${object.apiVersion}`);
    } catch (e) {
      console.log(`${name}: ${e.message}`);
      problems++;
    }
  }
  return problems;
}

main().then(
  (problems) => process.exit(problems === 0 ? 0 : 1),
  (e) => {
    console.log(`validate_models: ${e.stack || e}`);
    process.exit(2);
  },
);
