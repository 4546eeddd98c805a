// Writes tests/tokenizer/fixtures.tsv: hard texts and the ids tiktoken itself gives them, for
// tests/test_tokenizer.cpp. Run once, from the repository root, with the npm tiktoken package
// (tiktoken compiled to WebAssembly) installed outside the repository:
//
//   npm install --prefix /tmp/tiktoken-js tiktoken
//   NODE_PATH=/tmp/tiktoken-js/node_modules node scripts/make_tokenizer_fixtures.mjs
//
// One line per text: hex(input bytes) TAB gpt2 ids TAB cl100k_base ids TAB hex(text tiktoken saw), the
// last column "=" when that is the input itself.
// tiktoken takes strings, not bytes, so each input is first decoded with TextDecoder (the WHATWG
// decoder: every ill-formed subpart becomes U+FFFD), then passed to encode_ordinary; the last column
// is that text as UTF-8, which is also what decoding the ids must give back.
import { createRequire } from "module";
import fs from "fs";

const require = createRequire(process.env.NODE_PATH + "/");
const { get_encoding } = require("tiktoken");

const b = (s) => Buffer.from(s, "utf8");
const raw = (...bytes) => Buffer.from(bytes);
const cat = (...parts) => Buffer.concat(parts.map((p) => (typeof p === "string" ? b(p) : p)));

// A fixed pseudo-random sequence, so the fixtures are reproducible.
let seed = 12345;
const rand = (n) => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) % n;

const cases = [
  // scripts
  "Hello, world! The quick brown fox jumps over the lazy dog.",
  "Ça va? Déjà vu, naïve façade, Straße, Æsir, Øresund, İstanbul, ǅemal",
  "Привет, мир! Съешь же ещё этих мягких французских булок. Ελληνικά: Γειά σου κόσμε.",
  "العربية: مرحبا بالعالم. עברית: שלום עולם. فارسی: سلام دنیا",
  "हिन्दी: नमस्ते दुनिया। বাংলা: ওহে বিশ্ব। தமிழ்: வணக்கம் உலகம். ગુજરાતી ਪੰਜਾਬੀ",
  "ภาษาไทย: สวัสดีชาวโลก ລາວ ဗမာစာ ខ្មែរ ᠮᠣᠩᠭᠣᠯ ትግርኛ አማርኛ ᏣᎳᎩ",
  "中文：你好，世界！日本語：こんにちは世界、カタカナ。한국어: 안녕하세요 세계 𠜎𠜱𠝹𠱓 𰀀 𲎯",
  "Emoji: 😀😃😄 👍🏽 👨‍👩‍👧‍👦 🇫🇷🇯🇵 ❤️ 🏳️‍🌈 🧑🏿‍🚀 ✨🎉🔥 a😀b 1😀2",
  "Math: ∀x∈ℝ, ∃y: x² + y² = z²; ∑ᵢ aᵢ ≤ ∫₀^∞ f(x) dx ≠ ∞ — “quotes” ‘single’ «guillemets» …",
  "Mixed ℌ𝔢𝔩𝔩𝔬 𝐛𝐨𝐥𝐝 ＦＵＬＬＷＩＤＴＨ ｶﾀｶﾅ ǈ ᾈ ﬁ ﬀ Ⅻ ⅻ ꙮ",
  "Combining: e\u0301 a\u0308 n\u0303 ก\u0e31 \u0301\u0301x Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f",
  // digits
  "0 1 12 123 1234 12345 123456 1234567 12345678901234567890",
  "3.14159 2,718 1_000_000 1e-9 0x1F -42 +7 v2.0.1 10:30pm 2024-05-20",
  "٠١٢٣٤٥٦٧٨٩ ۰۱۲ १२३ ১২৩ ๑๒๓ １２３ ²³¹ ½ ¾ ⅓ Ⅻ ① ⑩ 𝟙𝟚𝟛 𐄇 x1y22z333",
  "a1 1a ab12cd 12ab34 ½a a½ 7½",
  "9".repeat(200),
  // whitespace
  "   leading and trailing   ",
  "a  b   c    d     e\t\tf\t g \t h",
  "\n\n\nthree newlines then text\n\n\n",
  "  \n  \n  x \r\n y\r\n\r\nz\r \r",
  "x\n\n  ",
  "end with spaces   ",
  "nbsp\u00a0here\u00a0\u00a0and\u3000ideographic\u2003em\u2028line\u2029para\u0085nel\u180eMVS\u200bZWSP\ufeffBOM",
  " ".repeat(1000) + "x" + " ".repeat(999),
  "\n".repeat(3000),
  "\t".repeat(300) + "tab" + " \t".repeat(200),
  " \u00a0".repeat(100) + "!" + "\r\n".repeat(100),
  // contractions
  "I'm you're we'll they've she'd it's don't can't won't",
  "I'M YOU'RE WE'LL THEY'VE SHE'D IT'S DON'T",
  "'s 't 're 've 'm 'll 'd 'S 'T 'RE 'VE 'M 'LL 'D 'Re 'rE 'Ll 'lL 'Ve 'vE",
  "it'ſ 'ſ 'ſſ 'K 'k 'x '' ''' 's's'S'S O'Neil rock'n'roll '1 ' s ’s",
  "'sword 'llama 'dog 'Mary's' \"quoted\" `tick`",
  // control characters and special text
  "\x00\x01\x02\x07\x08\x0b\x0c\x1b[31mred\x1b[0m\x7f\x1f end",
  "tab\tvt\x0bff\x0ccr\rnl\nnul\x00",
  "<|endoftext|> is ordinary text here <|fim_prefix|> <|endofprompt|>",
  "",
  "a",
  " ",
  // code and URLs
  "def f(x):\n    return x**2  # square\n\nif __name__ == '__main__':\n\tprint(f(3))\n",
  "https://example.com/path?q=1&r=%20x#frag user@example.org C:\\Users\\x",
  "{\"key\": [1, 2.5, null, true], \"k2\": \"v\\n\"}  <div class=\"a\">&amp;</div>",
  "x".repeat(500) + " " + "ab".repeat(300) + " Pneumonoultramicroscopicsilicovolcanoconiosis",
  // invalid UTF-8
  raw(0xff),
  raw(0x80, 0x80, 0x41),
  raw(0xc0, 0x80, 0x41),
  cat("abc", raw(0xe2, 0x82)),
  cat(raw(0xe2, 0x82), "x"),
  cat("surrogate ", raw(0xed, 0xa0, 0x80), " end"),
  cat("above max ", raw(0xf4, 0x90, 0x80, 0x80), " end"),
  cat("cut emoji ", raw(0xf0, 0x9f, 0x98), " and ", raw(0xf0, 0x9f, 0x98, 0x80)),
  cat(raw(0xc3, 0x28), " ", raw(0xa0, 0xa1), " ", raw(0xe0, 0x80, 0x80), " ", raw(0xf8, 0x88, 0x80, 0x80, 0x80)),
  cat("word", raw(0xfe), "word", raw(0xc2), " ", raw(0xef, 0xbf, 0xbd), raw(0xf5)),
  cat("'", raw(0xff), "s '", raw(0xc5), "s"),
];

// Every boundary of the letter, number and space classes (data/unicode_tables.h) in contexts where
// the class decides the split: after a letter, after a digit, after a space, and after an apostrophe.
const table = fs.readFileSync("data/unicode_tables.h", "utf8");
const points = [];
for (const m of table.matchAll(/\{0x([0-9A-F]+), 0x([0-9A-F]+), CP_\w+\}/g)) {
  const first = parseInt(m[1], 16), last = parseInt(m[2], 16);
  for (const cp of [first - 1, first, last, last + 1])
    if (cp >= 0 && cp <= 0x10ffff && (cp < 0xd800 || cp > 0xdfff)) points.push(cp);
}
for (let i = 0; i < points.length; i += 40) {
  let s = "";
  for (const cp of points.slice(i, i + 40)) {
    const c = String.fromCodePoint(cp);
    s += "a" + c + "1" + c + " " + c + "'" + c + "\n";
  }
  cases.push(s);
}

// Random soup from every class, including combining marks, emoji, controls and whitespace.
const pool = [..."aZé ß\u00a0\t\n\r'’1٣½Ⅻ.,!?-_/\\@#😀👍🏽\u0301\u200d中あ한Жωا𝔘\u3000\u2028\x00\x1b<|>"];
for (let k = 0; k < 3; k++) {
  let s = "";
  for (let i = 0; i < 3000; i++) s += pool[rand(pool.length)];
  cases.push(s);
}

const gpt2 = get_encoding("gpt2"), cl100k = get_encoding("cl100k_base");
const decoder = new TextDecoder("utf-8", { fatal: false });
const lines = cases.map((c) => {
  const bytes = typeof c === "string" ? b(c) : c;
  const text = decoder.decode(bytes);
  const seen = b(text).equals(bytes) ? "=" : b(text).toString("hex");
  return [bytes.toString("hex"), Array.from(gpt2.encode_ordinary(text)).join(" "),
          Array.from(cl100k.encode_ordinary(text)).join(" "), seen].join("\t");
});
fs.writeFileSync("tests/tokenizer/fixtures.tsv", lines.join("\n") + "\n");
console.log(`wrote tests/tokenizer/fixtures.tsv: ${lines.length} texts`);
gpt2.free();
cl100k.free();
