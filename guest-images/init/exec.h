// ember guest init, exec mode: see exec.c.
#ifndef EMBER_INIT_EXEC_H
#define EMBER_INIT_EXEC_H

// 1 if the kernel command line has ember.exec=1 (set by `ember exec`).
int exec_requested(void);
// Run the command from the ember.stdin port; returns its shell-style status (125: setup failed).
int exec_main(void);
// Bring lo up; with user, also eth0 (address mac, if given) with libslirp's fixed addresses
// and a default route.
void net_setup(int user, const char *mac);

#endif
