// Copies each SDK's published browser bundle (one <script>-loadable file) into dist/.
//
// @segment/analytics-next: dist/umd/index.js, the UMD build that defines `AnalyticsNext`
//   (`AnalyticsNext.AnalyticsBrowser.load(...)`). It imports a few optional chunks lazily; none of
//   them is needed with the settings kindling serves (no device-mode integrations, middleware or
//   remote plugins), and the test fails if the page asks any other host for anything.
// @rudderstack/analytics-js: dist/npm/modern/bundled/umd/index.js, the build with its plugins
//   bundled in (the default build fetches them from RudderStack's CDN), which defines
//   `rudderanalytics.RudderAnalytics`.
import { copyFileSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const bundles = {
  "analytics-next.js": ["@segment/analytics-next", "dist/umd/index.js"],
  "rudderstack.js": ["@rudderstack/analytics-js", "dist/npm/modern/bundled/umd/index.js"],
};

// Built next to dist/ and moved into place, so dist/ is either complete or absent.
const staging = join(here, "dist.partial");
const dist = join(here, "dist");
rmSync(staging, { recursive: true, force: true });
mkdirSync(staging);
const versions = {};
for (const [file, [name, path]] of Object.entries(bundles)) {
  const packageDir = join(here, "node_modules", name);
  versions[name] = JSON.parse(readFileSync(join(packageDir, "package.json"), "utf8")).version;
  copyFileSync(join(packageDir, path), join(staging, file));
}
writeFileSync(join(staging, "versions.json"), JSON.stringify(versions, null, 2) + "\n");
rmSync(dist, { recursive: true, force: true });
renameSync(staging, dist);
