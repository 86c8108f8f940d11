/* `ember exec`: run one command in a throwaway microVM, with its streams and exit status. */
#ifndef EMBER_EXEC_H
#define EMBER_EXEC_H

#include <time.h>

#include "config.h"

#define EXEC_MAX_COPY_IN 32
#define EXEC_MAX_ENV     256

struct exec_config {
    struct vm_config vm; /* kernel, initrd, cpus, memory, sandbox and jail flags */
    const char *rootfs;  /* --rootfs IMG: read-only root under a tmpfs overlay */
    const char *copy_in[EXEC_MAX_COPY_IN]; /* HOSTPATH:GUESTPATH */
    int nr_copy_in;
    const char *env[EXEC_MAX_ENV]; /* K=V */
    int nr_env;
    const char *workdir;
    int net_user;          /* --net user[,...] */
    struct net_config net; /* its options, as ember run's --net user takes them */
    unsigned timeout_s;    /* --timeout; 0: none */
    int no_jail;           /* --no-jail */
    int no_snapshot;       /* --no-snapshot: boot, neither use nor save a ready snapshot */
    char **argv;
    int argc;

    /* ember-oci runs a container as an exec (vmm/oci/): */
    struct exec_io *io;      /* streams, spec and agent link filled in; NULL: from the above */
    int rootfs_rw;           /* the rootfs disk is attached read-write (else read-only) */
    const char *files_image; /* a packed copy-in image (copyin_pack), attached read-only */
};

/* Parse `ember exec` arguments (argv[0] is "exec"). 0, 1 if help was printed, or -EINVAL
 * after one error line. */
int cli_parse_exec(int argc, char **argv, struct exec_config *x);
/* Run it; returns the command's status or one of ember's codes (exitcode.h). */
int ember_exec(struct exec_config *x, const struct timespec *start);

/* Pack --copy-in sources ("HOSTPATH:GUESTPATH") into a newc cpio image in a new file in dir
 * (NULL: $TMPDIR) (vmm/copyin.c). Writes its path into path (size PATH_MAX). 0 or -errno
 * after one error line. */
int copyin_pack(const char *const *specs, int n, const char *dir, char *path, size_t pathlen);

/* ember's cache directory for sub ($EMBER_CACHE_DIR, else $XDG_CACHE_HOME/ember, else
 * $HOME/.cache/ember; then sub): exec's snapshots, ember-oci's root disks. 0 or -errno. */
int exec_cache_dir(const char *sub, char *out, size_t n);

/* Where the guest kernel and initramfs are looked for: $EMBER_IMAGES_DIR, else the installed
 * <bindir>/../share/ember/images when it holds them, else the build's guest-images/out. */
const char *exec_images_dir(void);

/* A stream of our own for stdout/stderr (fd) that never blocks (outstream.h); on failure
 * (o->fd -1) one warning names what the command loses. */
struct out_stream;
void exec_open_stream(struct out_stream *o, int fd, const char *what);

/* ember_run calls this in exec mode to turn why the VM stopped into exec's exit code. */
struct exec_io;
int exec_exit_code(const struct exec_io *io, int code);

#endif
