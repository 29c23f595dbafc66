// Builds the dashboard (served at /) and the script-tag widget (served at
// /widget.js) into ../assets, which the nodai binary embeds with
// include_bytes!. The built files are committed so that `cargo build` needs
// no Node.js; `node build.mjs --check` (run by .ci/run) rebuilds into a
// temporary directory and fails if anything differs from what is committed.
import * as esbuild from "esbuild";
import { mkdtempSync, readFileSync, readdirSync, rmSync, copyFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const committed = join(here, "..", "assets");
const check = process.argv.includes("--check");
// `--only dashboard` or `--only widget` builds one of them (while developing).
const onlyAt = process.argv.indexOf("--only");
const only = onlyAt > 0 ? process.argv[onlyAt + 1] : null;
const out = check ? mkdtempSync(join(tmpdir(), "nodai-assets-")) : committed;

const common = {
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2020"],
  legalComments: "none",
  logLevel: "warning",
  define: { "process.env.NODE_ENV": '"production"' },
};

if (only !== "widget") await esbuild.build({
  ...common,
  entryPoints: { dashboard: join(here, "src/dashboard/main.tsx") },
  outdir: out,
  jsx: "automatic",
  jsxImportSource: "preact",
});
if (only !== "dashboard") await esbuild.build({
  ...common,
  entryPoints: { widget: join(here, "../../sdk/widget/src/script-tag.ts") },
  outdir: out,
});
copyFileSync(join(here, "src/index.html"), join(out, "index.html"));

if (check) {
  const built = readdirSync(out).sort();
  const have = existsSync(committed) ? readdirSync(committed).sort() : [];
  const differ = [...new Set([...built, ...have])].filter((name) => {
    const a = join(out, name);
    const b = join(committed, name);
    return !existsSync(a) || !existsSync(b) || !readFileSync(a).equals(readFileSync(b));
  });
  rmSync(out, { recursive: true, force: true });
  if (differ.length > 0) {
    console.error(`api/assets differs from a fresh build: ${differ.join(", ")}`);
    console.error("run `npm run build` in api/web and commit api/assets");
    process.exit(1);
  }
  console.log("api/assets matches a fresh build");
}
