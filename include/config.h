/* A microVM's configuration: one schema for the command line (and, later, the config file). */
#ifndef EMBER_CONFIG_H
#define EMBER_CONFIG_H

#include <stdint.h>

#define EMBER_XSTR(x) #x
#define EMBER_STR(x)  EMBER_XSTR(x)

enum console_kind { CONSOLE_KIND_SERIAL, CONSOLE_KIND_NONE };
enum on_reboot { ON_REBOOT_EXIT, ON_REBOOT_RESTART };

struct vm_config {
    const char *kernel;
    const char *initrd;
    const char *cmdline;    /* appended to the default, or replacing it */
    int no_default_cmdline; /* --no-default-cmdline */
    int cpus;
    uint64_t memory; /* bytes */
    int hugepages;
    enum console_kind console;
    int boot_timer;
    enum on_reboot on_reboot;
    char **init_args; /* after "--": the command the guest init runs */
    int nr_init_args;
};

#define CONFIG_DEFAULT_CPUS   1
#define CONFIG_DEFAULT_MEMORY (256ULL << 20)
#define CONFIG_MIN_MEMORY     (16ULL << 20)
#define CONFIG_MAX_MEMORY     (1ULL << 40)

void config_defaults(struct vm_config *cfg);

/* Parse "512M", "2G", "1024" (MiB), "64K". Returns 0 or -EINVAL / -ERANGE. */
int parse_size(const char *s, uint64_t *out);

/* Parse `ember run` arguments (argv[0] is "run"). Returns 0, 1 if help was printed, or
 * -EINVAL after printing one error line naming the flag. */
int cli_parse_run(int argc, char **argv, struct vm_config *cfg);
void cli_usage_run(void);

#endif
