// Builds dist/esm (ES modules) and dist/cjs (CommonJS), each with .d.ts, by
// running tsc with two tsconfigs; dist/cjs gets a package.json saying so,
// since the package itself is "type": "module".
//
// It is also the `prepare` script, which npm runs when this folder is
// installed from a path (`npm install /path/to/sdk/typescript`) or packed.
// npm does not install a linked folder's devDependencies, so when TypeScript
// is missing there, prepare installs them first from package-lock.json.
import { execFileSync } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const require = createRequire(import.meta.url);

function findTsc() {
  try {
    return require.resolve("typescript/bin/tsc");
  } catch {
    return undefined;
  }
}

let tsc = findTsc();
if (!tsc && process.env.npm_lifecycle_event === "prepare" && process.env.npm_execpath) {
  console.log("@nodai/sdk prepare: installing the build tools (npm ci --ignore-scripts) in", root);
  // Settings of the outer install (global, prefix, …) must not apply to this one.
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^npm_config_/i.test(name)));
  execFileSync(
    process.execPath,
    [process.env.npm_execpath, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--include=dev"],
    { cwd: root, stdio: "inherit", env },
  );
  tsc = findTsc();
}
if (!tsc) {
  console.error("@nodai/sdk: TypeScript is not installed: run `npm ci` in", root, "then `npm run build`");
  process.exit(1);
}

rmSync(`${root}dist`, { recursive: true, force: true });
for (const project of ["tsconfig.esm.json", "tsconfig.cjs.json"]) {
  execFileSync(process.execPath, [tsc, "-p", `${root}${project}`], { stdio: "inherit" });
}
mkdirSync(`${root}dist/cjs`, { recursive: true });
writeFileSync(`${root}dist/cjs/package.json`, `${JSON.stringify({ type: "commonjs" }, null, 2)}\n`);
console.log("built dist/esm and dist/cjs");
