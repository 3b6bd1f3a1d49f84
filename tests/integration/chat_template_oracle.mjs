// Parity of `accullm chat-template` with @huggingface/jinja (the engine the Hub and
// transformers.js render chat templates with): every fixture template × every conversation
// below × add_generation_prompt true/false must give byte-identical output, or both must
// fail (and when the template itself raised, with the same message).
//
// Usage: node chat_template_oracle.mjs ACCULLM FIXTURE_DIR   (CHAT_TEMPLATE_PARITY_VERBOSE=1 lists the
//          cases where both fail, with both messages)
//        node chat_template_oracle.mjs --render TEMPLATE MESSAGES_JSON [--no-generation-prompt]
//          (renders one case with the oracle only; MESSAGES_JSON as `accullm chat-template`)
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const { Template } = await import(join(here, "../oracles/node_modules/@huggingface/jinja/dist/index.js"));

function oracleRender(source, messagesJson, addGenerationPrompt, bos, eos) {
  const extra = Array.isArray(messagesJson) ? {} : { ...messagesJson };
  const messages = Array.isArray(messagesJson) ? messagesJson : messagesJson.messages;
  delete extra.messages;
  try {
    const out = new Template(source).render({
      messages,
      bos_token: bos,
      eos_token: eos,
      add_generation_prompt: addGenerationPrompt,
      tools: null,
      documents: null,
      ...extra,
    });
    return { ok: true, out: Buffer.from(out, "utf8") };
  } catch (e) {
    return { ok: false, message: String(e && e.message !== undefined ? e.message : e) };
  }
}

const args = process.argv.slice(2);
if (args[0] === "--render") {
  const [, templatePath, messagesPath] = args;
  const r = oracleRender(readFileSync(templatePath, "utf8"), JSON.parse(readFileSync(messagesPath, "utf8")),
                         !args.includes("--no-generation-prompt"), "<s>", "</s>");
  if (!r.ok) {
    console.error(`error: ${r.message}`);
    process.exit(1);
  }
  process.stdout.write(r.out);
  process.exit(0);
}

const [accullm, fixtureDir] = args;
if (!accullm || !fixtureDir) {
  console.error("usage: node chat_template_oracle.mjs ACCULLM FIXTURE_DIR");
  process.exit(2);
}

// Special tokens per template (as the models' tokenizer_config.json files have them).
const TOKENS = {
  "chatml": ["", "<|im_end|>"],
  "gemma-it": ["<bos>", "<eos>"],
  "llama2-chat": [{ content: "<s>", lstrip: false }, { content: "</s>", lstrip: false }],  // AddedToken form
  "llama3-instruct": ["<|begin_of_text|>", "<|eot_id|>"],
  "llama3-lenml": ["<|begin_of_text|>", "<|end_of_text|>"],
  "llama3.1-instruct": ["<|begin_of_text|>", "<|eot_id|>"],
  "mistral-instruct-v0.1": ["<s>", "</s>"],
  "mistral-instruct-v0.3": ["<s>", "</s>"],
  "phi3-mini-instruct": ["<s>", "<|endoftext|>"],
  "qwen2-instruct": [null, "<|im_end|>"],
  "qwen2.5-instruct": [null, "<|im_end|>"],
  "qwen3": [null, "<|im_end|>"],
  "zephyr-beta": ["<s>", "</s>"],
};
const tokenString = (t) => (t === null || t === undefined ? "" : typeof t === "string" ? t : t.content);

const TOOLS = [{
  type: "function",
  function: {
    name: "get_weather",
    description: "Get the current weather in a city",
    parameters: {
      type: "object",
      properties: {
        city: { type: "string", description: "City name, e.g. \"Paris\"" },
        unit: { type: "string", enum: ["celsius", "fahrenheit"] },
      },
      required: ["city"],
    },
  },
}];
const TOOL_TURNS = [
  { role: "system", content: "You can call tools." },
  { role: "user", content: "Weather in Paris?" },
  { role: "assistant", content: "", tool_calls: [{ id: "call12345", type: "function",
    function: { name: "get_weather", arguments: { city: "Paris", unit: "celsius" } } }] },
  { role: "tool", tool_call_id: "call12345", content: "{\"temperature\": 21.5}" },
  { role: "assistant", content: "It is 21.5 °C in Paris." },
  { role: "user", content: "Thanks!" },
];
const UNICODE = "Ünïcödé — 日本語 😀 \"double\" 'single' \\backslash {{ not_a_tag }} {% nor_this %} {# nor #}\nsecond line\n\ttabbed  ";
const longChat = [];
for (let i = 0; i < 20; ++i) longChat.push({ role: i % 2 ? "assistant" : "user", content: `turn ${i}: ${"word ".repeat(i)}` });

const CONVERSATIONS = {
  "system+user": [{ role: "system", content: "You are a helpful assistant." }, { role: "user", content: "Hello!" }],
  "user-only": [{ role: "user", content: "What is 2 + 2?" }],
  "multi-turn": [
    { role: "user", content: "Hi" },
    { role: "assistant", content: "Hello! How can I help?" },
    { role: "user", content: "Tell me a joke." },
  ],
  "system+multi-turn": [
    { role: "system", content: "  Be brief.  \n" },
    { role: "user", content: "Hi" },
    { role: "assistant", content: " Hello. " },
    { role: "user", content: "Bye" },
  ],
  "unicode-quotes-braces": [{ role: "user", content: UNICODE }],
  "unicode-multi": [
    { role: "system", content: "Réponds en français. 中文也可以。" },
    { role: "user", content: UNICODE },
    { role: "assistant", content: "D'accord — « ok » 👍\n" },
    { role: "user", content: "{\"json\": [1, 2, {\"a\": null}]}" },
  ],
  "empty-content": [{ role: "user", content: "" }],
  "empty-assistant": [{ role: "user", content: "x" }, { role: "assistant", content: "" }, { role: "user", content: "" }],
  "whitespace-only": [{ role: "user", content: " \n\t " }],
  "falsy-strings": [{ role: "system", content: "0" }, { role: "user", content: "false" }],
  "long-20-turns": longChat,
  "think-tags": [
    { role: "user", content: "Solve it." },
    { role: "assistant", content: "<think>\nLet me think.\n</think>\n\nThe answer is 4." },
    { role: "user", content: "And again?" },
  ],
  // Error cases: role order and roles the templates refuse.
  "error-assistant-first": [{ role: "assistant", content: "I start." }, { role: "user", content: "Hi" }],
  "error-two-users": [{ role: "user", content: "a" }, { role: "user", content: "b" }],
  "error-unknown-role": [{ role: "user", content: "a" }, { role: "narrator", content: "b" }],
  "error-system-later": [{ role: "user", content: "a" }, { role: "assistant", content: "b" }, { role: "system", content: "c" }],
  "error-no-messages": [],
  // Tool use (passed as {"messages", "tools"}), and tool calls without a tool list.
  "tools": { messages: TOOL_TURNS, tools: TOOLS },
  "tool-calls-no-tools": TOOL_TURNS,
  // OpenAI-style null content next to tool calls: some templates handle it, others fail
  // inside the engine (e.g. `null | trim`); both engines must agree on which.
  "null-content-tool-call": {
    messages: [TOOL_TURNS[1], { ...TOOL_TURNS[2], content: null }, TOOL_TURNS[3]],
    tools: TOOLS,
  },
};

const work = mkdtempSync(join(tmpdir(), "chat-template-parity-"));
let total = 0, same = 0, bothError = 0;
const failures = [];
try {
  const templates = readdirSync(fixtureDir).filter((f) => f.endsWith(".jinja")).sort();
  if (templates.length === 0) throw new Error(`no .jinja fixtures in ${fixtureDir}`);
  for (const file of templates) {
    const name = file.replace(/\.jinja$/, "");
    const source = readFileSync(join(fixtureDir, file), "utf8");
    const [bos, eos] = TOKENS[name] ?? ["<s>", "</s>"];
    // The model directory: the template inside tokenizer_config.json (mistral v0.3 as a
    // named list, as some repositories publish it).
    const modelDir = join(work, name);
    mkdirSync(modelDir);
    const chatTemplate = name === "mistral-instruct-v0.3"
      ? [{ name: "default", template: source }, { name: "tool_use", template: "{{ 'unused' }}" }]
      : source;
    writeFileSync(join(modelDir, "tokenizer_config.json"),
                  JSON.stringify({ bos_token: bos, eos_token: eos, chat_template: chatTemplate }, null, 2));
    const templateOnlyDir = join(work, `${name}-tokens-only`);
    mkdirSync(templateOnlyDir);
    writeFileSync(join(templateOnlyDir, "tokenizer_config.json"), JSON.stringify({ bos_token: bos, eos_token: eos }));

    let tSame = 0, tErr = 0, tTotal = 0;
    for (const [convName, conv] of Object.entries(CONVERSATIONS)) {
      const messagesPath = join(work, `${name}-${convName}.json`);
      writeFileSync(messagesPath, JSON.stringify(conv));
      for (const gen of [true, false]) {
        ++total;
        ++tTotal;
        // Alternate between the template inside the config and --template FILE.
        const cli = gen ? ["chat-template", "--model", modelDir, "--messages", messagesPath]
                        : ["chat-template", "--model", templateOnlyDir, "--template", join(fixtureDir, file),
                           "--messages", messagesPath, "--no-generation-prompt"];
        let ours;
        try {
          ours = { ok: true, out: execFileSync(accullm, cli, { stdio: ["ignore", "pipe", "pipe"], maxBuffer: 1 << 26 }) };
        } catch (e) {
          if (e.status === null || e.status === undefined || e.status > 1) {
            ours = { ok: false, crash: true, message: `exit ${e.status} signal ${e.signal}: ${e.stderr}` };
          } else {
            ours = { ok: false, message: String(e.stderr).replace(/^error: /, "").replace(/\n$/, "") };
          }
        }
        const oracle = oracleRender(source, conv, gen, tokenString(bos), tokenString(eos));
        const label = `${name} / ${convName} / add_generation_prompt=${gen}`;
        if (ours.ok && oracle.ok) {
          if (Buffer.compare(ours.out, oracle.out) === 0) {
            ++same;
            ++tSame;
          } else {
            failures.push(`${label}: output differs\n    ours:   ${JSON.stringify(ours.out.toString("utf8"))}\n    oracle: ${JSON.stringify(oracle.out.toString("utf8"))}`);
          }
        } else if (!ours.ok && !oracle.ok && !ours.crash) {
          // Our own errors say "chat template: ..."; anything else is the template's
          // raise_exception message, which must be the oracle's exactly.
          if (!ours.message.startsWith("chat template") && ours.message !== oracle.message) {
            failures.push(`${label}: both fail, messages differ\n    ours:   ${ours.message}\n    oracle: ${oracle.message}`);
          } else {
            ++bothError;
            ++tErr;
            if (process.env.CHAT_TEMPLATE_PARITY_VERBOSE) console.log(`  both fail: ${label}\n    ours:   ${ours.message}\n    oracle: ${oracle.message}`);
          }
        } else {
          failures.push(`${label}: ${ours.ok ? "ours renders" : `ours fails (${ours.message})`}, ` +
                        `${oracle.ok ? "oracle renders" : `oracle fails (${oracle.message})`}`);
        }
      }
    }
    console.log(`${name.padEnd(24)} ${tSame + tErr}/${tTotal} agree (${tSame} identical renders, ${tErr} both fail)`);
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
for (const f of failures.slice(0, 20)) console.log(`MISMATCH ${f}`);
console.log(`chat template parity: ${same + bothError}/${total} agree (${same} byte-identical, ${bothError} both error), ${failures.length} mismatches`);
process.exit(failures.length === 0 ? 0 : 1);
