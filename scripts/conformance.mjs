#!/usr/bin/env node
/**
 * Builds docs/CONFORMANCE.md from
 *   docs/conformance/mqtt5-statements.tsv, docs/conformance/mqtt311-statements.tsv  (id, section, binds, text)
 *   docs/conformance/unnumbered.tsv  (id, spec, section, binds, text): normative rules without an id of their own
 *   docs/conformance/notes.tsv  (spec, id, kind, basis, reason) for statements proved without a test
 * and the test titles under test/ that name statements: `[MQTT-x.y.z-n]` (5.0), `[MQTT311-x.y.z-n]`
 * (3.1.1) or `[U-...]` (unnumbered); lists `[MQTT-3.3.1-10, 3.3.1-11]` and ranges `[MQTT-3.3.2-15..20]`
 * are understood.
 *
 * `--check` exits 1, naming each row and why, when the document is out of date, a server-side
 * statement has neither a test nor a reason, a reason has no valid kind or basis (a `src/` file that
 * exists and holds the `#symbol` named, or a spec section for not-applicable/client-only), a reason
 * cites a test file or title that does not exist, or a reason is kept for a statement a test now names.
 */
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const SERVER_SIDE = new Set(["server", "both", "sender", "receiver"]);
/** Why a statement needs no test. */
const KINDS = {
  "not-applicable": "the broker never reaches the situation the statement governs (the basis says why)",
  "by-construction":
    "holds by how the code is built, with nothing a client can observe to test (the basis names the code)",
  "client-only": "the statement is worded for both sides, but only a client can break it in this broker",
};

function readTsv(path) {
  if (!existsSync(join(root, path))) return [];
  const [header, ...lines] = readFileSync(join(root, path), "utf8").trim().split("\n");
  const keys = header.split("\t");
  return lines
    .filter(Boolean)
    .map((line, i) => ({ ...Object.fromEntries(line.split("\t").map((v, k) => [keys[k], v])), line: i + 2 }));
}

function* files(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) yield* files(path);
    else if (/\.test\.ts$/.test(name)) yield path;
  }
}

/** Expands `3.3.2-15..20` into 3.3.2-15 ... 3.3.2-20. */
function expand(token) {
  const m = token.trim().match(/^(\d+(?:\.\d+)*)-(\d+)(?:\.\.(\d+))?$/);
  if (!m) return [];
  const [, section, from, to] = m;
  const last = Number(to ?? from);
  return Array.from({ length: last - Number(from) + 1 }, (_, i) => `${section}-${Number(from) + i}`);
}

/**
 * A title as the document shows it: `it.each` placeholders (`%s`, `%i`, `$name`) become the table's
 * values when the table is a literal list of numbers or strings ("QoS 0/1/2"), otherwise a marker
 * naming the table ("‹each of tokens›").
 */
function displayTitle(title, table) {
  if (table === undefined || !/%[sidfjo#]|\$[A-Za-z_]/.test(title)) return title;
  const literal = table.match(/^\s*\[([^\][]*)\](?:\s+as\s+const)?\s*$/);
  const values = literal
    ? literal[1]
        .split(",")
        .map((v) => v.trim().replace(/^(["'`])(.*)\1$/, "$2"))
        .filter(Boolean)
    : null;
  const marker = values ? values.join("/") : `‹each of ${table.trim()}›`;
  return title.replace(/%[sidfjo#]|\$[A-Za-z_][\w.]*/g, marker);
}

/** Every test title, per file, with the statement ids it names: {titles: file -> Set, byId: key -> [{file, title}]}. */
function scanTests() {
  const titles = new Map();
  const byId = new Map();
  const add = (key, proof) => byId.set(key, [...(byId.get(key) ?? []), proof]);
  const titleRe = /\b(?:it|test|describe)(?:\.each\(([^)]*)\))?\(\s*(["'`])((?:\\.|(?!\2).)*)\2/g;
  for (const path of files(join(root, "test"))) {
    const file = relative(root, path);
    const text = readFileSync(path, "utf8");
    const own = new Set();
    titles.set(file, own);
    for (const match of text.matchAll(titleRe)) {
      const raw = match[3];
      own.add(raw);
      const proof = { file, title: displayTitle(raw, match[1]) };
      own.add(proof.title);
      for (const group of raw.matchAll(/\[MQTT(311)?-([^\]]+)\]/g)) {
        const spec = group[1] ? "3.1.1" : "5.0";
        let section = "";
        for (const part of group[2].split(",")) {
          // "3.3.1-10, 3.3.1-11" or "3.3.1-10, 11" (the section carries over)
          const token = /^\s*\d+\s*$/.test(part) ? `${section}-${part.trim()}` : part.trim();
          section = token.split("-")[0];
          for (const id of expand(token)) add(`${spec} MQTT-${id}`, proof);
        }
      }
      for (const group of raw.matchAll(/\[(U-[^\]\s]+)\]/g)) add(`unnumbered ${group[1]}`, proof);
    }
  }
  return { titles, byId };
}

const escape = (s) => String(s ?? "").replaceAll("|", "\\|");

/** Why a note cannot stand, or [] when it can. */
function noteProblems(note, titles) {
  const problems = [];
  if (!(note.kind in KINDS)) problems.push(`kind "${note.kind}" is not one of ${Object.keys(KINDS).join(", ")}`);
  const basis = note.basis ?? "";
  const src = basis.match(/^(src\/[\w./-]+)(?:#([\w.$]+))?$/);
  const section = basis.match(/^spec (\d+(?:\.\d+)*)$/);
  if (src) {
    const [, path, symbol] = src;
    if (!existsSync(join(root, path))) problems.push(`basis ${path} does not exist`);
    else if (symbol && !readFileSync(join(root, path), "utf8").includes(symbol))
      problems.push(`basis ${path} has no ${symbol}`);
  } else if (section) {
    if (note.kind === "by-construction")
      problems.push("a by-construction reason must name the code (src/...), not a spec section");
  } else problems.push(`basis "${basis}" is neither src/<file>[#symbol] nor "spec <section>"`);
  if (!note.reason?.trim()) problems.push("no reason text");
  const reason = note.reason ?? "";
  for (const path of reason.match(/\bsrc\/[\w./-]+\.ts\b/g) ?? []) {
    if (!existsSync(join(root, path))) problems.push(`cites ${path}, which does not exist`);
  }
  // A test cited as `test/x.test.ts "title"` (a title ending in "..." is a prefix): both must exist.
  const cites = [...reason.matchAll(/\btest\/[\w./-]+\.test\.ts\b/g)];
  cites.forEach((cite, i) => {
    const file = cite[0];
    const own = titles.get(file);
    if (!own) return problems.push(`cites ${file}, which does not exist`);
    const tail = reason.slice(cite.index + file.length, cites[i + 1]?.index ?? reason.length);
    const quotes = [...tail.matchAll(/"([^"]+)"/g)];
    if (!quotes.length) problems.push(`cites ${file} without the title of a test in it`);
    for (const [, quoted] of quotes) {
      const prefix = quoted.endsWith("...") ? quoted.slice(0, -3) : null;
      const found = [...own].some((t) =>
        prefix ? t.startsWith(prefix) : t === quoted || t.replace(/\s*\[[^\]]*\]/g, "") === quoted,
      );
      if (!found) problems.push(`cites test "${quoted}" in ${file}, which has no such title`);
    }
  });
  if (/\btest "|\btests? in\b(?! test\/)/.test(reason) && !cites.length)
    problems.push("names a test without its file (test/...test.ts)");
  return problems;
}

function build() {
  const lists = [
    ["5.0", "MQTT 5.0", readTsv("docs/conformance/mqtt5-statements.tsv")],
    ["3.1.1", "MQTT 3.1.1", readTsv("docs/conformance/mqtt311-statements.tsv")],
    ["unnumbered", "Unnumbered normative rules", readTsv("docs/conformance/unnumbered.tsv")],
  ];
  const noteKey = (n) => (n.id.startsWith("U-") ? `unnumbered ${n.id}` : `${n.spec} ${n.id}`);
  const notes = new Map(readTsv("docs/conformance/notes.tsv").map((n) => [noteKey(n), n]));
  const { titles, byId } = scanTests();
  const errors = [];
  const used = new Set();
  const out = [
    "# Conformance",
    "",
    "Every normative statement of MQTT 5.0 and 3.1.1 that binds a server, with the test that proves it",
    "or the reason it needs none. Generated by `npm run conformance` from `docs/conformance/*.tsv` and the",
    "statement ids in test titles; `npm test` fails when a server-side statement has neither, when a",
    "reason lacks a kind or a basis that exists, or when a reason cites a test that does not exist.",
    "",
  ];
  const summary = [];
  const sections = [];
  for (const [spec, heading, statements] of lists) {
    const rows = [];
    let server = 0;
    let tested = 0;
    let reasoned = 0;
    for (const s of statements) {
      const key = `${spec} ${s.id}`;
      if (!SERVER_SIDE.has(s.binds)) continue;
      server++;
      const proofs = byId.get(key) ?? [];
      const note = notes.get(key);
      if (note) used.add(key);
      let proof;
      if (proofs.length) {
        tested++;
        if (note)
          errors.push(
            `${key}: tested by ${proofs[0].file}, so its reason in notes.tsv (line ${note.line}) is out of date: remove it`,
          );
        proof = proofs
          .slice(0, 3)
          .map((p) => `\`${p.file}\`: ${escape(p.title)}`)
          .join("<br>");
      } else if (note) {
        reasoned++;
        for (const problem of noteProblems(note, titles))
          errors.push(`${key} (notes.tsv line ${note.line}): ${problem}`);
        proof = `*${note.kind}* (\`${escape(note.basis)}\`): ${escape(note.reason)}`;
      } else {
        errors.push(`${key}: binds the server (${s.binds}) but has neither a test naming it nor a reason in notes.tsv`);
        proof = "**missing**";
      }
      const label = spec === "unnumbered" ? `${s.id} (${s.spec} ${escape(s.section)})` : s.id;
      rows.push(`| ${label} | ${escape(s.binds)} | ${escape(s.text)} | ${proof} |`);
    }
    summary.push(
      `| ${spec} | ${statements.length} | ${server} | ${tested} | ${reasoned} | ${server - tested - reasoned} |`,
    );
    sections.push(
      `## ${heading}`,
      "",
      "| statement | binds | text (abridged) | proof |",
      "| --- | --- | --- | --- |",
      ...rows,
      "",
    );
  }
  for (const [key, note] of notes) {
    if (!used.has(key))
      errors.push(
        `${key} (notes.tsv line ${note.line}): no server-side statement with this id, so the reason stands for nothing`,
      );
  }
  out.push(
    "| spec | statements | bind the server | proved by a named test | no test needed (reason) | missing |",
    "| --- | --- | --- | --- | --- | --- |",
    ...summary,
    "",
    "A statement without a test carries a reason of one of these kinds, and a basis the generator checks",
    "exists (a source file, and the symbol named in it, or the specification section):",
    "",
    ...Object.entries(KINDS).map(([kind, meaning]) => `- *${kind}*: ${meaning}.`),
    "",
    "Statements that bind only the client are listed in the TSV, not here.",
    "The 5.0 list (`docs/conformance/mqtt5-statements.tsv`) holds the numbered statements of the 5.0",
    "specification (cross-checked against a public per-statement conformance table) with who each binds;",
    "the texts are abridged in our own words. The 3.1.1 list",
    "(`docs/conformance/mqtt311-statements.tsv`) was checked against the OASIS 3.1.1 standard text and its",
    "Appendix B: all 141 numbered statements (three misprinted ids there are listed in their normal form).",
    "The unnumbered list (`docs/conformance/unnumbered.tsv`) holds normative rules the specifications",
    "state without an id (ids `U-...` are ours); tests cite them the same way, e.g. `[U-5.0-props-once]`.",
    "",
    ...sections,
  );
  return { text: out.join("\n"), errors, summary };
}

const { text, errors, summary } = build();
const counts = summary
  .map((row) => row.replace(/^\| /, "").split(" | "))
  .map(
    ([spec, , server, tested, reasoned]) => `${spec}: ${server} server-side, ${tested} tested, ${reasoned} by reason`,
  );
if (process.argv.includes("--check")) {
  const current = existsSync(join(root, "docs/CONFORMANCE.md"))
    ? readFileSync(join(root, "docs/CONFORMANCE.md"), "utf8")
    : "";
  if (current !== text) errors.unshift("docs/CONFORMANCE.md is out of date: run npm run conformance");
  if (errors.length) {
    console.error(`conformance: ${errors.length} problem(s)\n${errors.map((e) => `  - ${e}`).join("\n")}`);
    process.exit(1);
  }
  console.log(`conformance: up to date, every row justified (${counts.join("; ")})`);
} else {
  writeFileSync(join(root, "docs/CONFORMANCE.md"), text);
  console.log(`wrote docs/CONFORMANCE.md (${counts.join("; ")})`);
  if (errors.length)
    console.error(
      `${errors.length} problem(s), npm run test:conformance will fail:\n${errors.map((e) => `  - ${e}`).join("\n")}`,
    );
}
