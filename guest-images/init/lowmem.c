// ember guest init, OCI mode: the container's early OOM kill, before the guest thrashes.
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "oci.h"
#include "util.h"

// A container's memory is the guest's, and the guest has no swap: as it runs out, the kernel
// reclaims the only pages it can, the container's own program text on the root disk, and reads
// it back at once. Under nested emulation that can go on for minutes before the kernel's OOM
// killer decides. runc's cgroup limit kills at once; this does the same at the guest's limit.
#define LOWMEM_SAMPLES 2 // below the mark this many samples in a row

static long meminfo_kib(const char *buf, const char *key)
{
    const char *p = strstr(buf, key);
    return p ? strtol(p + strlen(key), NULL, 10) : -1;
}

// Resident pages of pid (from /proc/PID/statm), 0 if gone, a zombie or a kernel thread.
static long resident_pages(pid_t pid)
{
    char path[64], buf[128];
    long size, rss;
    snprintf(path, sizeof(path), "/proc/%d/statm", (int)pid);
    if (read_file(path, buf, sizeof(buf)) || sscanf(buf, "%ld %ld", &size, &rss) != 2)
        return 0;
    return rss;
}

// The kernel's OOM killer's choice, near enough: the process with most memory resident.
static pid_t largest_process(void)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    long best = 0;
    pid_t victim = 0;
    if (!d)
        return 0;
    while ((e = readdir(d))) {
        pid_t pid = (pid_t)strtol(e->d_name, NULL, 10);
        if (!isdigit((unsigned char)e->d_name[0]) || pid == 1)
            continue; // init is this agent
        long rss = resident_pages(pid);
        if (rss > best) {
            best = rss;
            victim = pid;
        }
    }
    closedir(d);
    return victim;
}

int oci_lowmem_check(int *below)
{
    static pid_t dying; // the last one killed, until its memory is gone (a zombie has none)
    static int waited;  // samples spent waiting for it (bounded: its pid may be reused)
    static long long last_ms;
    struct timespec now;
    char buf[4096];
    clock_gettime(CLOCK_MONOTONIC, &now);
    long long ms = now.tv_sec * 1000LL + now.tv_nsec / 1000000;
    if (ms - last_ms < OCI_LOWMEM_MS)
        return 0; // a busy relay wakes the loop far more often than that
    last_ms = ms;
    if (dying > 0) {
        if (resident_pages(dying) > 0 && ++waited < 50)
            return 0; // one at a time, as the kernel's OOM killer waits for its victim
        dying = 0;
        waited = 0;
    }
    if (read_file("/proc/meminfo", buf, sizeof(buf)))
        return 0;
    long total = meminfo_kib(buf, "MemTotal:"), avail = meminfo_kib(buf, "MemAvailable:");
    long mark = total / 32 > 4096 ? total / 32 : 4096;
    if (total <= 0 || avail < 0 || avail >= mark) {
        *below = 0;
        return 0;
    }
    if (++*below < LOWMEM_SAMPLES)
        return 0;
    *below = 0;
    pid_t victim = largest_process();
    if (victim <= 0 || kill(victim, SIGKILL) != 0)
        return 0;
    dying = victim;
    int kmsg = open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
    if (kmsg >= 0) {
        dprintf(kmsg,
                "<3>ember-init: out of memory (%ld of %ld KiB available): killed process %d\n",
                avail, total, (int)victim);
        close(kmsg);
    }
    return 1;
}
