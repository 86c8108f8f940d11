/* Unit tests for kernel command-line assembly: defaults, user text, init args, limits. */
#include "check.h"
#include "arch.h"
#include "cmdline.h"

#include <errno.h>
#include <string.h>

static char out[4096];

static int build(const char *base, const char *user, const char *extra, char **args, int n)
{
    int bad = -1;
    int r = cmdline_build(out, sizeof(out), base, user, extra, args, n, &bad);

    return r < 0 ? r : 0;
}

int main(void)
{
    char *args[] = {"sh", "-c", "echo hi there", ""};
    char *quote[] = {"echo", "say \"x\""};
    char *newline[] = {"a\nb"};
    int bad = -1;

    CHECK_EQ(build("console=ttyS0", NULL, NULL, NULL, 0), 0);
    CHECK(strcmp(out, "console=ttyS0") == 0);

    CHECK_EQ(build("a=1", "b=2", "virtio_mmio.device=4K@0xc0001000:5", NULL, 0), 0);
    CHECK(strcmp(out, "a=1 b=2 virtio_mmio.device=4K@0xc0001000:5") == 0);

    /* Device parameters must stay before the init part of the user's text. */
    CHECK_EQ(build("a=1", "b=2 -- x y", "dev=1", NULL, 0), 0);
    CHECK(strcmp(out, "a=1 b=2 dev=1 -- x y") == 0);
    CHECK_EQ(build("a=1", "-- x", NULL, args, 2), 0);
    CHECK(strcmp(out, "a=1 -- x sh -c") == 0);

    /* Arguments with spaces are quoted, empty ones too. */
    CHECK_EQ(build("a=1", NULL, NULL, args, 4), 0);
    CHECK(strcmp(out, "a=1 -- sh -c \"echo hi there\" \"\"") == 0);

    /* No base (--no-default-cmdline). */
    CHECK_EQ(build(NULL, "root=/dev/vda", NULL, NULL, 0), 0);
    CHECK(strcmp(out, "root=/dev/vda") == 0);
    CHECK_EQ(build(NULL, "  spaced  ", NULL, NULL, 0), 0);
    CHECK(strcmp(out, "spaced") == 0);

    /* What the kernel cannot carry is refused, naming the argument. */
    CHECK_EQ(cmdline_build(out, sizeof(out), "a", NULL, NULL, quote, 2, &bad), -EINVAL);
    CHECK_EQ(bad, 1);
    CHECK_EQ(cmdline_build(out, sizeof(out), "a", NULL, NULL, newline, 1, &bad), -EINVAL);
    CHECK_EQ(bad, 0);

    /* Limits: exactly fitting, one too long, zero capacity. */
    CHECK_EQ(cmdline_build(out, 6, "abcde", NULL, NULL, NULL, 0, NULL), 5);
    CHECK_EQ(cmdline_build(out, 5, "abcde", NULL, NULL, NULL, 0, NULL), -E2BIG);
    CHECK_EQ(cmdline_build(out, 0, "a", NULL, NULL, NULL, 0, NULL), -E2BIG);

    /* The defaults are what the README promises. */
    CHECK(strstr(cmdline_default(CONSOLE_KIND_SERIAL), "console=ttyS0") != NULL);
    CHECK(strstr(cmdline_default(CONSOLE_KIND_SERIAL), arch_map.cmdline_default) != NULL);
    CHECK(strstr(cmdline_default(CONSOLE_KIND_SERIAL), "panic=1") != NULL);
    CHECK(strstr(cmdline_default(CONSOLE_KIND_NONE), "console=") == NULL);
    CHECK(strstr(cmdline_default(CONSOLE_KIND_VIRTIO), "console=hvc0") != NULL);
    return check_done("cmdline");
}
