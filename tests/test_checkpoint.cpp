// Checkpoint files: a round trip restores config, step, parameters, moments and data position exactly;
// the latest complete checkpoint is found; damaged files are refused with a message naming the file.
#include "test_checkpoint.h"

#include <cstdio>
#include <cstdlib>
#include <string>
#include <unistd.h>
#include <vector>

#include "../model/checkpoint.h"
#include "../model/parameters.h"
#include "random_inputs.h"

void test_checkpoint(TestReport& r) {
    char dir_template[] = "/tmp/test_checkpoint_XXXXXX";
    const std::string dir = mkdtemp(dir_template);
    Config c = tiny_config("MAM", 4, 1, 1);
    c.clip = 0.5;
    ParameterTable t = parameter_table_build(c);
    std::vector<double> p = random_parameters(t, c, 5, 0.1, 0.1);
    std::vector<float> params(p.begin(), p.end()), m(t.total), v(t.total);
    for (size_t i = 0; i < t.total; i++) { m[i] = 0.5f * params[i]; v[i] = params[i] * params[i]; }
    TrainingState s{40, 1, 2, 3, 1337};
    std::string err;
    bool ok = checkpoint_write_model(checkpoint_model_path(dir, 40), c, 40, params, err) &&
              checkpoint_write_state(checkpoint_state_path(dir, 40), t, s, m, v, err) &&
              checkpoint_write_model(checkpoint_model_path(dir, 80), c, 80, params, err);
    r.check(ok, "checkpoint: write model and state files %s", err.c_str());
    r.check(checkpoint_latest(dir) == 40, "checkpoint: latest complete checkpoint is step %lld (model_80 has no state)",
            (long long)checkpoint_latest(dir));

    Config c2;
    int64_t step = 0;
    std::vector<float> params2, m2, v2;
    TrainingState s2{};
    ok = checkpoint_read_model(checkpoint_model_path(dir, 40), c2, step, params2, err) &&
         checkpoint_read_state(checkpoint_state_path(dir, 40), t, s2, m2, v2, err);
    const bool same_config = config_describe(c2) == config_describe(c);
    r.check(ok && same_config && step == 40 && params2 == params && m2 == m && v2 == v && s2.data_epoch == 1 &&
                s2.data_shard == 2 && s2.data_window == 3 && s2.seed == 1337,
            "checkpoint: round trip restores config (%s), step %lld, %zu parameters, moments and data position %s",
            config_describe(c2).c_str(), (long long)step, params2.size(), err.c_str());

    // damaged files: truncated, wrong magic, a state file of another model
    const std::string model_path = checkpoint_model_path(dir, 40);
    ok = truncate(model_path.c_str(), 1024 + 4 * 100) == 0 && !checkpoint_read_model(model_path, c2, step, params2, err);
    r.check(ok && err.find("truncated") != std::string::npos, "checkpoint: truncated model file refused: %s", err.c_str());
    FILE* f = fopen(model_path.c_str(), "r+b");
    const int bad = 12345;
    ok = f && fwrite(&bad, 4, 1, f) == 1;
    if (f) fclose(f);
    ok = ok && !checkpoint_read_model(model_path, c2, step, params2, err);
    r.check(ok && err.find("magic") != std::string::npos, "checkpoint: wrong magic refused: %s", err.c_str());
    ok = !checkpoint_read_state(checkpoint_state_path(dir, 40), parameter_table_build(tiny_config("MM", 4, 1, 1)), s2,
                                m2, v2, err);
    r.check(ok && err.find(checkpoint_state_path(dir, 40)) != std::string::npos,
            "checkpoint: state file of another parameter count refused: %s", err.c_str());
    ok = !checkpoint_read_model(dir + "/missing.bin", c2, step, params2, err);
    r.check(ok, "checkpoint: missing file refused: %s", err.c_str());

    for (const std::string& name : {checkpoint_model_path(dir, 40), checkpoint_state_path(dir, 40),
                                    checkpoint_model_path(dir, 80)})
        remove(name.c_str());
    rmdir(dir.c_str());
}
