// Independent reference for our tokenizer: @huggingface/tokenizers (pure JS).
// Usage: node tokenize_oracle.mjs TOKENIZER_JSON STRINGS_JSON [--no-special]
// STRINGS_JSON holds a JSON array of strings; prints one JSON id array per string, one per
// line, in the same format as `accullm tokenize --jsonl`. A tokenizer_config.json beside the
// tokenizer.json is passed along, as transformers.js does.
import { readFileSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";

const args = process.argv.slice(2);
const noSpecial = args.includes("--no-special");
const [tokenizerPath, stringsPath] = args.filter((a) => !a.startsWith("--"));
if (!tokenizerPath || !stringsPath) {
  console.error("usage: node tokenize_oracle.mjs TOKENIZER_JSON STRINGS_JSON [--no-special]");
  process.exit(2);
}
const tokenizerJson = JSON.parse(readFileSync(tokenizerPath, "utf8"));
const configPath = join(dirname(tokenizerPath), "tokenizer_config.json");
const config = existsSync(configPath) ? JSON.parse(readFileSync(configPath, "utf8")) : {};
const tokenizer = new Tokenizer(tokenizerJson, config);
const strings = JSON.parse(readFileSync(stringsPath, "utf8"));
const lines = strings.map((s) => {
  const { ids } = tokenizer.encode(s, { add_special_tokens: !noSpecial });
  return "[" + ids.join(", ") + "]";
});
process.stdout.write(lines.join("\n") + "\n");
