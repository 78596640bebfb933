// Writes testdata/tokenizers/<name>/golden.json: the token ids that transformers.js
// (an implementation independent of this project) gives for each text of texts.json,
// without BOS/EOS, with added/special tokens recognised in the text.
import { readFileSync, writeFileSync, readdirSync, existsSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { env, AutoTokenizer } from "@huggingface/transformers";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..", "..", "testdata", "tokenizers");
env.allowRemoteModels = false;
env.allowLocalModels = true;
env.localModelPath = root + "/";

const texts = JSON.parse(readFileSync(join(here, "texts.json"), "utf8"));
const pkg = JSON.parse(readFileSync(join(here, "node_modules", "@huggingface", "transformers", "package.json"), "utf8"));
const only = process.argv.slice(2);

for (const name of readdirSync(root)) {
  if (!existsSync(join(root, name, "tokenizer.json"))) continue;
  if (only.length && !only.includes(name)) continue;
  const tok = await AutoTokenizer.from_pretrained(name);
  const cases = texts.map(({ name: id, text }) => {
    const ids = tok.encode(text, { add_special_tokens: false });
    const decoded = ids.length === 0 ? "" : tok.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
    return { name: id, text, ids, decoded };
  });
  const out = {
    tokenizer: name,
    reference: `@huggingface/transformers ${pkg.version} (AutoTokenizer, encode add_special_tokens=false; decode skip_special_tokens=false, clean_up_tokenization_spaces=false)`,
    cases,
  };
  writeFileSync(join(root, name, "golden.json"), JSON.stringify(out, null, 1) + "\n");
  console.log(`${name}: ${cases.length} cases`);
}
