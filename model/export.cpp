// m2rnn_export: a model checkpoint to model.safetensors + config.json (model/safetensors.h), and back. Host
// only, no GPU. The fp32 export holds the checkpoint's parameters bit for bit, so exporting and importing gives
// back the same checkpoint file byte for byte.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "checkpoint.h"
#include "safetensors.h"

static void usage(FILE* out) {
    fprintf(out,
            "usage: ./m2rnn_export <model_N.bin> <dir> [--dtype fp32|bf16]\n"
            "         writes <dir>/model.safetensors and <dir>/config.json from a checkpoint (default fp32: the\n"
            "         master weights exactly; bf16 rounds them to nearest-even)\n"
            "       ./m2rnn_export <dir>/model.safetensors <model.bin>\n"
            "         writes a model checkpoint from model.safetensors and the config.json beside it\n");
}

static void fail(const std::string& msg) {
    fprintf(stderr, "m2rnn_export: %s\n", msg.c_str());
    exit(EXIT_FAILURE);
}

int main(int argc, char** argv) {
    if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        usage(stdout);
        return 0;
    }
    if (argc != 3 && !(argc == 5 && !strcmp(argv[3], "--dtype"))) {
        usage(stderr);
        return 2;
    }
    const std::string in = argv[1], out = argv[2];
    Config c;
    int64_t step;
    std::vector<float> params;
    std::string err;
    if (safetensors_is_path(in)) {
        if (argc == 5) fail("--dtype applies to an export; importing keeps the file's values");
        if (!safetensors_read(in, c, step, params, err)) fail(err);
        if (!checkpoint_write_model(out, c, step, params, err)) fail(err);
        printf("%s -> %s: %s, step %lld, %zu parameters\n", in.c_str(), out.c_str(), config_describe(c).c_str(),
               (long long)step, params.size());
        return 0;
    }
    const char* dtype = argc == 5 ? argv[4] : "fp32";
    if (strcmp(dtype, "fp32") != 0 && strcmp(dtype, "bf16") != 0)
        fail(std::string("--dtype ") + dtype + ": expected fp32 or bf16");
    if (!checkpoint_read_model(in, c, step, params, err)) fail(err + " (give a model_N.bin or a model.safetensors)");
    if (!safetensors_write(out, c, step, params, !strcmp(dtype, "bf16"), err)) fail(err);
    printf("%s -> %s/%s + %s (%s): %s, step %lld, %zu parameters\n", in.c_str(), out.c_str(),
           SAFETENSORS_MODEL_FILE, SAFETENSORS_CONFIG_FILE, dtype, config_describe(c).c_str(), (long long)step,
           params.size());
    return 0;
}
