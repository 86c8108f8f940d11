/* ember-oci's command options, runc style: --name VALUE, --name=VALUE, -x VALUE, flags as
 * --name or --name=true|false, options before or after the ID, "--" ends them. */
#include "oci.h"

#include <string.h>

int oci_flag(const char *v)
{
    return v && strcmp(v, "false") != 0;
}

static const struct oci_opt *find(const struct oci_opt *opts, const char *name, size_t len,
                                  char short_name)
{
    for (; opts && opts->name; opts++) {
        if (short_name && opts->short_name == short_name)
            return opts;
        if (!short_name && strlen(opts->name) == len && !strncmp(opts->name, name, len))
            return opts;
    }
    return NULL;
}

int oci_parse_args(int argc, char **argv, const struct oci_opt *opts, const char **pos, int max_pos,
                   int *npos)
{
    int only_pos = 0;

    *npos = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *eq, *name;
        const struct oci_opt *o;
        size_t len;

        if (only_pos || a[0] != '-' || !a[1]) {
            if (*npos == max_pos)
                return oci_error("unexpected argument '%s'", a);
            pos[(*npos)++] = a;
            continue;
        }
        if (!strcmp(a, "--")) {
            only_pos = 1;
            continue;
        }
        name = a + (a[1] == '-' ? 2 : 1);
        eq = strchr(name, '=');
        len = eq ? (size_t)(eq - name) : strlen(name);
        o = a[1] == '-' || len > 1 ? find(opts, name, len, 0) : find(opts, NULL, 0, name[0]);
        if (!o)
            return oci_error("unknown option '%s' for this command", a);
        if (!o->takes_value) {
            *o->value = eq ? eq + 1 : "true";
            continue;
        }
        if (eq) {
            *o->value = eq + 1;
        } else {
            if (i + 1 == argc)
                return oci_error("option '%s' needs a value", a);
            *o->value = argv[++i];
        }
    }
    return 0;
}
