/* libFuzzer target: `--config FILE`, the JSON document read into the run configuration
 * (vmm/config.c), and query-config's rendering of what was applied. */
#include "config.h"
#include "fuzz_common.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

static int fd = -1;
static char path[64];

/* The file is a memfd, rewritten for each input: config_load_file reads it by its path. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fd = memfd_create("ember-fuzz-config", MFD_CLOEXEC);
    if (fd < 0)
        abort();
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    return 0;
}

/* Input: the file's contents. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct vm_config cfg;

    if (ftruncate(fd, 0) || (size && pwrite(fd, data, size, 0) != (ssize_t)size))
        abort();
    config_defaults(&cfg);
    if (config_load_file(&cfg, path) == 0) {
        /* Render it as query-config does and read that back (it may be refused: e.g. a
         * disk path with a comma; it must not crash or leak). */
        json_object *out = config_to_json(&cfg);
        struct vm_config again;
        char err[256];

        if (!out)
            abort();
        config_defaults(&again);
        config_apply_json(&again, out, NULL, err, sizeof(err));
        json_object_put(out);
        config_free(&again);
    }
    config_free(&cfg);
    return 0;
}
