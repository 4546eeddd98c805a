#include "safetensors.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>

#include "checkpoint.h"
#include "json.h"
#include "model_math.h"

// The safetensors format caps its header at 100 MB; a length beyond it means the file is not one.
static const uint64_t MAX_HEADER_BYTES = 100u << 20;
static const double ROPE_THETA = 10000.0;  // docs/model.md §2.3: ω_i = 10000^(−2i/hd)

std::string safetensors_name(const ParamTensor& p) {
    const std::string layer = "model.layers." + std::to_string(p.layer) + ".";
    switch (p.kind) {
    case P_WTE: return "model.embed_tokens.weight";
    case P_LN1: return layer + "mixer_norm.weight";
    case P_IN_PROJ: return layer + "mixer.in_proj.weight";
    case P_CONV: return layer + "mixer.conv1d.weight";
    case P_A_LOG: return layer + "mixer.A_log";
    case P_DT_BIAS: return layer + "mixer.dt_bias";
    case P_W: return layer + "mixer.W";
    case P_SKIP: return layer + "mixer.D";
    case P_GNORM: return layer + "mixer.norm.weight";
    case P_OUT_PROJ: return layer + "mixer.out_proj.weight";
    case P_QKV: return layer + "mixer.qkv_proj.weight";
    case P_ATTN_OUT: return layer + "mixer.out_proj.weight";
    case P_LN2: return layer + "mlp_norm.weight";
    case P_UP: return layer + "mlp.up_proj.weight";
    case P_DOWN: return layer + "mlp.down_proj.weight";
    case P_LNF: return "model.norm.weight";
    case P_LM_HEAD: return "lm_head.weight";
    case NUM_PARAM_KINDS: break;
    }
    return "";
}

std::vector<int64_t> safetensors_shape(const ParamTensor& p) {
    if (p.kind == P_CONV) return {p.shape[0], 1, p.shape[1]};  // nn.Conv1d(groups=channels): (out, in/groups, width)
    return std::vector<int64_t>(p.shape, p.shape + p.ndim);
}

bool safetensors_is_path(const std::string& path) {
    const std::string ext = ".safetensors";
    return path.size() >= ext.size() && path.compare(path.size() - ext.size(), ext.size(), ext) == 0;
}

// fp32 -> bf16, round to nearest, ties to even; a NaN stays a (quiet) NaN.
static uint16_t bf16_from_float(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7FFFu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

static float float_from_bf16(uint16_t b) {
    const uint32_t u = (uint32_t)b << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}

static std::string dirname_of(const std::string& path) {
    const size_t slash = path.rfind('/');
    return slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
}

static std::string shape_string(const std::vector<int64_t>& shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); i++) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

// ---------------------------------------------------------------- writing

static std::string config_json(const Config& c, bool bf16) {
    const char* tokenizer = config_tokenizer(c);
    char buf[2048];
    snprintf(buf, sizeof buf,
             "{\n"
             "  \"model_type\": \"m2rnn\",\n"
             "  \"layer_pattern\": \"%s\",\n"
             "  \"num_hidden_layers\": %d,\n"
             "  \"hidden_size\": %d,\n"
             "  \"intermediate_size\": %d,\n"
             "  \"num_attention_heads\": %d,\n"
             "  \"use_rope\": %s,\n"
             "  \"rope_theta\": %g,\n"
             "  \"m2rnn_heads\": %d,\n"
             "  \"m2rnn_key_size\": %d,\n"
             "  \"m2rnn_value_size\": %d,\n"
             "  \"m2rnn_query_heads\": %d,\n"
             "  \"m2rnn_key_heads\": %d,\n"
             "  \"conv_width\": %d,\n"
             "  \"state_gradient_clip\": %.17g,\n"
             "  \"vocab_size\": %d,\n"
             "  \"padded_vocab_size\": %d,\n"
             "  \"train_sequence_length\": %d,\n"
             "  \"rms_norm_eps\": %g,\n"
             "  \"tie_word_embeddings\": false,\n"
             "  \"tokenizer\": %s%s%s,\n"
             "  \"torch_dtype\": \"%s\"\n"
             "}\n",
             c.pattern, c.L, c.D, c.F, c.heads, c.rope ? "true" : "false", ROPE_THETA, c.N, c.K, c.V, c.Nq, c.Nk,
             CONV_WIDTH, c.clip, c.vocab, c.Vp, c.T, RMSNORM_EPS, tokenizer ? "\"" : "",
             tokenizer ? tokenizer : "null", tokenizer ? "\"" : "", bf16 ? "bfloat16" : "float32");
    return buf;
}

bool safetensors_write(const std::string& dir, const Config& c, int64_t step, const std::vector<float>& params,
                       bool bf16, std::string& err) {
    const ParameterTable t = parameter_table_build(c);
    if (params.size() != t.total) {
        err = "safetensors_write: " + std::to_string(params.size()) + " parameters for a config of " +
              std::to_string(t.total);
        return false;
    }
    if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
        err = dir + ": cannot create the directory (" + strerror(errno) + ")";
        return false;
    }
    const size_t width = bf16 ? 2 : 4;
    std::string header = "{\"__metadata__\":{\"format\":\"pt\",\"step\":\"" + std::to_string(step) + "\"}";
    for (const ParamTensor& p : t.tensors) {
        const std::vector<int64_t> shape = safetensors_shape(p);
        std::string dims;
        for (size_t i = 0; i < shape.size(); i++) dims += (i ? "," : "") + std::to_string(shape[i]);
        header += ",\"" + safetensors_name(p) + "\":{\"dtype\":\"" + (bf16 ? "BF16" : "F32") + "\",\"shape\":[" + dims +
                  "],\"data_offsets\":[" + std::to_string(p.file_offset * width) + "," +
                  std::to_string((p.file_offset + p.numel) * width) + "]}";
    }
    header += "}";
    header.resize((header.size() + 7) / 8 * 8, ' ');  // the data section starts 8-byte aligned
    const uint64_t n = header.size();
    uint8_t length[8];
    for (int i = 0; i < 8; i++) length[i] = (uint8_t)(n >> (8 * i));
    // the tensors back to back, without the arena's gaps (model/parameters.h)
    std::vector<float> packed(t.count);
    parameters_pack(t, params.data(), packed.data());
    std::vector<uint16_t> narrow;
    if (bf16) {
        narrow.resize(packed.size());
        std::transform(packed.begin(), packed.end(), narrow.begin(), bf16_from_float);
    }
    const void* data = bf16 ? (const void*)narrow.data() : (const void*)packed.data();
    const std::string config = config_json(c, bf16);
    return write_file_atomically(dir + "/" SAFETENSORS_MODEL_FILE,
                                 {{length, 8}, {header.data(), header.size()}, {data, packed.size() * width}}, err) &&
           write_file_atomically(dir + "/" SAFETENSORS_CONFIG_FILE, {{config.data(), config.size()}}, err);
}

// ---------------------------------------------------------------- reading config.json

namespace {

// The fields of config.json, each read once; what is left at the end is unknown.
struct ConfigReader {
    const Json& j;
    const std::string& path;
    std::string& err;
    std::vector<std::string> seen;

    const Json* field(const char* key, Json::Type type) {
        seen.push_back(key);
        const Json* v = j.get(key);
        if (!v) {
            err = path + ": the field \"" + key + "\" is missing (write config.json with m2rnn_export)";
            return nullptr;
        }
        if (v->type != type) {
            Json want;
            want.type = type;
            err = path + ": \"" + key + "\" is " + json_type_name(*v) + ", expected " + json_type_name(want);
            return nullptr;
        }
        return v;
    }
    bool integer(const char* key, int& out) {
        const Json* v = field(key, Json::NUMBER);
        if (!v) return false;
        if (!v->is_integer || v->integer < 0 || v->integer > INT_MAX) {
            err = path + ": \"" + key + "\" must be a whole number in 0.." + std::to_string(INT_MAX);
            return false;
        }
        out = (int)v->integer;
        return true;
    }
    bool number(const char* key, double& out) {
        const Json* v = field(key, Json::NUMBER);
        if (v) out = v->number;
        return v != nullptr;
    }
    bool boolean(const char* key, bool& out) {
        const Json* v = field(key, Json::BOOLEAN);
        if (v) out = v->boolean;
        return v != nullptr;
    }
    bool string(const char* key, std::string& out) {
        const Json* v = field(key, Json::STRING);
        if (v) out = v->text;
        return v != nullptr;
    }
    // A field that is this model's constant: config.json may not change it.
    bool constant(const char* key, double value) {
        double got;
        if (!number(key, got)) return false;
        if (got == value) return true;
        char msg[160];
        snprintf(msg, sizeof msg, ": \"%s\" is %g; this model has %g and no other value", key, got, value);
        err = path + msg;
        return false;
    }
};

}  // namespace

static bool read_text(const std::string& path, std::string& text, std::string& err) {
    struct stat st;
    if (stat(path.c_str(), &st) != 0) {
        err = path + ": cannot open (" + strerror(errno) + ")";
        return false;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > (off_t)MAX_HEADER_BYTES) {
        err = path + (S_ISREG(st.st_mode) ? ": larger than any config.json (100 MB)" : ": not a regular file");
        return false;
    }
    FILE* f = fopen(path.c_str(), "rb");
    if (!f) {
        err = path + ": cannot open (" + strerror(errno) + ")";
        return false;
    }
    text.resize((size_t)st.st_size);
    const bool ok = fread(&text[0], 1, text.size(), f) == text.size();
    fclose(f);
    if (!ok) err = path + ": read failed";
    return ok;
}

// config.json into a Config; the torch_dtype it names ("float32" or "bfloat16") into dtype.
static bool read_config(const std::string& path, Config& c, std::string& dtype, std::string& err) {
    std::string text;
    if (!read_text(path, text, err)) {
        err += " (config.json must lie beside model.safetensors)";
        return false;
    }
    Json j;
    if (!json_parse(text, j, err)) {
        err = path + ": not valid JSON: " + err;
        return false;
    }
    if (j.type != Json::OBJECT) {
        err = path + ": is " + json_type_name(j) + ", expected an object of the model's fields";
        return false;
    }
    ConfigReader r{j, path, err, {}};
    memset(&c, 0, sizeof(c));
    std::string model_type, pattern;
    bool rope = false, tied = false;
    int layers = 0, conv_width = 0;
    const Json* tokenizer = nullptr;
    if (!r.string("model_type", model_type) || !r.string("layer_pattern", pattern) ||
        !r.integer("num_hidden_layers", layers) || !r.integer("hidden_size", c.D) ||
        !r.integer("intermediate_size", c.F) || !r.integer("num_attention_heads", c.heads) ||
        !r.boolean("use_rope", rope) || !r.constant("rope_theta", ROPE_THETA) || !r.integer("m2rnn_heads", c.N) ||
        !r.integer("m2rnn_key_size", c.K) || !r.integer("m2rnn_value_size", c.V) ||
        !r.integer("m2rnn_query_heads", c.Nq) || !r.integer("m2rnn_key_heads", c.Nk) ||
        !r.integer("conv_width", conv_width) || !r.number("state_gradient_clip", c.clip) ||
        !r.integer("vocab_size", c.vocab) || !r.integer("padded_vocab_size", c.Vp) ||
        !r.integer("train_sequence_length", c.T) || !r.constant("rms_norm_eps", RMSNORM_EPS) ||
        !r.boolean("tie_word_embeddings", tied) || !r.string("torch_dtype", dtype))
        return false;
    r.seen.push_back("tokenizer");
    tokenizer = j.get("tokenizer");
    for (const auto& m : j.members)
        if (std::find(r.seen.begin(), r.seen.end(), m.first) == r.seen.end()) {
            err = path + ": unknown field \"" + m.first + "\" (a typo? README: File formats lists the fields)";
            return false;
        }
    if (model_type != "m2rnn") {
        err = path + ": model_type \"" + model_type + "\" is not \"m2rnn\": not a model of this trainer";
        return false;
    }
    if (!config_set_pattern(c, pattern.c_str(), err)) {
        err = path + ": layer_" + err;
        return false;
    }
    if (layers != c.L) {
        err = path + ": num_hidden_layers = " + std::to_string(layers) + " but layer_pattern has " +
              std::to_string(c.L) + " layers";
        return false;
    }
    c.rope = rope;
    if (conv_width != CONV_WIDTH) {
        err = path + ": conv_width = " + std::to_string(conv_width) + "; this model's causal conv has " +
              std::to_string(CONV_WIDTH) + " taps and no other width";
        return false;
    }
    if (tied) {
        err = path + ": tie_word_embeddings is true; this model's lm_head is its own tensor (docs/model.md §6.12)";
        return false;
    }
    if (!config_validate(c, err)) {
        err = path + ": bad config: " + err;
        return false;
    }
    const char* expected_tokenizer = config_tokenizer(c);
    const bool tokenizer_ok = tokenizer && (expected_tokenizer ? tokenizer->type == Json::STRING &&
                                                                     tokenizer->text == expected_tokenizer
                                                               : tokenizer->type == Json::NUL);
    if (!tokenizer_ok) {
        err = path + ": \"tokenizer\" must be " +
              (expected_tokenizer ? "\"" + std::string(expected_tokenizer) + "\"" : std::string("null")) +
              ", the tokenizer of vocab_size " + std::to_string(c.vocab);
        return false;
    }
    if (dtype != "float32" && dtype != "bfloat16") {
        err = path + ": torch_dtype \"" + dtype + "\": expected \"float32\" or \"bfloat16\"";
        return false;
    }
    return true;
}

// ---------------------------------------------------------------- reading model.safetensors

namespace {
struct Entry {
    std::string name;
    size_t width;   // bytes per element: 4 for F32, 2 for BF16
    std::vector<int64_t> shape;
    uint64_t begin, end;
};
}  // namespace

// One tensor entry of the header, checked on its own: dtype, shape, offsets in the data section.
static bool read_entry(const std::string& path, const std::string& name, const Json& v, uint64_t data_bytes,
                       Entry& e, std::string& err) {
    const std::string what = path + ": tensor \"" + name + "\": ";
    const Json *dtype = v.get("dtype"), *shape = v.get("shape"), *offsets = v.get("data_offsets");
    if (v.type != Json::OBJECT || !dtype || !shape || !offsets || v.members.size() != 3 ||
        dtype->type != Json::STRING || shape->type != Json::ARRAY || offsets->type != Json::ARRAY) {
        err = what + "expected {\"dtype\": string, \"shape\": [...], \"data_offsets\": [begin, end]} and nothing "
              "else (not a safetensors header)";
        return false;
    }
    e.name = name;
    if (dtype->text == "F32") e.width = 4;
    else if (dtype->text == "BF16") e.width = 2;
    else {
        err = what + "dtype " + dtype->text + "; m2rnn reads F32 or BF16 (convert the file, or export it again "
              "with m2rnn_export --dtype fp32|bf16)";
        return false;
    }
    uint64_t numel = 1;
    for (const Json& d : shape->items) {
        if (d.type != Json::NUMBER || !d.is_integer || d.integer < 0 || d.integer > INT_MAX) {
            err = what + "a shape entry is not a whole number in 0.." + std::to_string(INT_MAX);
            return false;
        }
        e.shape.push_back(d.integer);
        numel *= (uint64_t)d.integer;
        if (numel > data_bytes) numel = data_bytes + 1;  // the size check below fails; no overflow on the way
    }
    if (offsets->items.size() != 2 || offsets->items[0].type != Json::NUMBER || !offsets->items[0].is_integer ||
        offsets->items[1].type != Json::NUMBER || !offsets->items[1].is_integer || offsets->items[0].integer < 0 ||
        offsets->items[1].integer < offsets->items[0].integer) {
        err = what + "data_offsets must be two whole numbers [begin, end] with 0 <= begin <= end";
        return false;
    }
    e.begin = (uint64_t)offsets->items[0].integer;
    e.end = (uint64_t)offsets->items[1].integer;
    if (e.end > data_bytes) {
        err = what + "data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "] end past the " +
              std::to_string(data_bytes) + "-byte data section (a truncated file, or a header that lies about "
              "offsets: export it again)";
        return false;
    }
    if (e.end - e.begin != numel * e.width) {
        err = what + "data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "] hold " +
              std::to_string(e.end - e.begin) + " bytes but shape " + shape_string(e.shape) + " of " + dtype->text +
              " needs " + std::to_string(numel * e.width) + " (a damaged header: export it again)";
        return false;
    }
    return true;
}

// The ranges of all tensors cover the data section exactly once.
static bool check_coverage(const std::string& path, std::vector<const Entry*> entries, uint64_t data_bytes,
                           std::string& err) {
    std::sort(entries.begin(), entries.end(), [](const Entry* a, const Entry* b) {
        return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
    });
    uint64_t cursor = 0;
    const Entry* previous = nullptr;
    for (const Entry* e : entries) {
        if (e->begin < cursor) {
            err = path + ": tensors \"" + previous->name + "\" and \"" + e->name +
                  "\" overlap in the data section (a header that lies about offsets: export it again)";
            return false;
        }
        if (e->begin > cursor) {
            err = path + ": bytes [" + std::to_string(cursor) + ", " + std::to_string(e->begin) +
                  ") of the data section belong to no tensor (a header that lies about offsets: export it again)";
            return false;
        }
        cursor = e->end;
        previous = e;
    }
    if (cursor != data_bytes) {
        err = path + ": the data section has " + std::to_string(data_bytes) + " bytes but its tensors end at byte " +
              std::to_string(cursor) + " (extra bytes or a header that lies about offsets: export it again)";
        return false;
    }
    return true;
}

bool safetensors_read(const std::string& path, Config& c, int64_t& step, std::vector<float>& params,
                      std::string& err) {
    const std::string config_path = dirname_of(path) + "/" SAFETENSORS_CONFIG_FILE;
    std::string dtype;
    if (!read_config(config_path, c, dtype, err)) return false;

    struct stat st;
    if (stat(path.c_str(), &st) != 0) {
        err = path + ": cannot open (" + strerror(errno) + ")";
        return false;
    }
    if (!S_ISREG(st.st_mode)) {
        err = path + ": not a regular file";
        return false;
    }
    const uint64_t size = (uint64_t)st.st_size;
    FILE* f = fopen(path.c_str(), "rb");
    if (!f) {
        err = path + ": cannot open (" + strerror(errno) + ")";
        return false;
    }
    uint8_t length[8];
    uint64_t n = 0;
    bool ok = size >= 8 && fread(length, 8, 1, f) == 1;
    for (int i = 0; ok && i < 8; i++) n |= (uint64_t)length[i] << (8 * i);
    if (!ok || n > size - 8 || n > MAX_HEADER_BYTES) {
        fclose(f);
        err = path + ": " + (ok ? "the header length " + std::to_string(n) + " does not fit the file's " +
                                      std::to_string(size) + " bytes"
                                : "shorter than the 8-byte header length") +
              " (not a safetensors file, or truncated)";
        return false;
    }
    std::string header(n, '\0');
    ok = n == 0 || fread(&header[0], 1, n, f) == n;
    Json j;
    std::string problem;
    if (!ok) problem = "unreadable";
    else if (!json_parse(header, j, problem)) problem = "not valid JSON: " + problem;
    else if (j.type != Json::OBJECT) problem = std::string("JSON ") + json_type_name(j) + ", not an object";
    if (!problem.empty()) {
        fclose(f);
        err = path + ": the header is " + problem + " (not a safetensors file, or damaged)";
        return false;
    }
    const uint64_t data_bytes = size - 8 - n;
    std::vector<Entry> entries;
    step = 0;
    for (const auto& m : j.members) {
        if (m.first == "__metadata__") {
            // {"step": "<digits>"} when the file came from a checkpoint; other metadata is not ours to read
            const Json* s = m.second.get("step");
            char* end = nullptr;
            if (s) step = s->type == Json::STRING ? strtoll(s->text.c_str(), &end, 10) : -1;
            if (s && (!end || end == s->text.c_str() || *end != '\0' || step < 0 || step > INT32_MAX)) {
                fclose(f);
                err = path + ": __metadata__ step must be a string of a step count 0.." + std::to_string(INT32_MAX);
                return false;
            }
            continue;
        }
        entries.emplace_back();
        if (!read_entry(path, m.first, m.second, data_bytes, entries.back(), err)) {
            fclose(f);
            return false;
        }
    }
    std::vector<const Entry*> all;
    for (const Entry& e : entries) all.push_back(&e);
    if (!check_coverage(path, all, data_bytes, err)) {
        fclose(f);
        return false;
    }

    // every tensor of the model config.json describes, with its shape and dtype, and no other
    const ParameterTable t = parameter_table_build(c);
    const std::string disagree = " (config.json does not describe this model.safetensors: keep the two files of one "
                                 "export together)";
    std::vector<const Entry*> found(t.tensors.size(), nullptr);
    for (const Entry& e : entries) {
        size_t i = 0;
        while (i < t.tensors.size() && safetensors_name(t.tensors[i]) != e.name) i++;
        if (i == t.tensors.size()) {
            fclose(f);
            err = path + ": tensor \"" + e.name + "\" is no tensor of the model in config.json (pattern " + c.pattern +
                  ")" + disagree;
            return false;
        }
        found[i] = &e;
    }
    const size_t width = dtype == "bfloat16" ? 2 : 4;
    params.assign(t.total, 0.0f);
    std::vector<uint16_t> narrow;
    for (size_t i = 0; i < t.tensors.size(); i++) {
        const ParamTensor& p = t.tensors[i];
        const std::string name = safetensors_name(p);
        const Entry* e = found[i];
        problem.clear();
        if (!e) problem = "is missing (layer " + std::to_string(p.layer) + " is " +
                          (p.layer < 0 ? "-" : std::string(1, c.pattern[p.layer])) + " in config.json's pattern " +
                          c.pattern + ")";
        else if (e->shape != safetensors_shape(p))
            problem = "has shape " + shape_string(e->shape) + " but config.json implies " +
                      shape_string(safetensors_shape(p));
        else if (e->width != width)
            problem = std::string("is ") + (e->width == 2 ? "BF16" : "F32") + " but config.json's torch_dtype is " +
                      dtype;
        if (!problem.empty()) {
            fclose(f);
            err = path + ": tensor \"" + name + "\" " + problem + disagree;
            return false;
        }
        ok = fseeko(f, (off_t)(8 + n + e->begin), SEEK_SET) == 0;
        if (width == 4) {
            ok = ok && fread(params.data() + p.offset, 4, p.numel, f) == p.numel;
        } else {
            narrow.resize(p.numel);
            ok = ok && fread(narrow.data(), 2, p.numel, f) == p.numel;
            std::transform(narrow.begin(), narrow.end(), params.begin() + p.offset, float_from_bf16);
        }
        if (!ok) {
            fclose(f);
            err = path + ": read failed at tensor \"" + name + "\" (file changed while reading?)";
            return false;
        }
    }
    fclose(f);
    return true;
}
