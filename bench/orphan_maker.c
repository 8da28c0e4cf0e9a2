/* Make COUNT short-lived orphans, one after the other, then exit.
 *
 *   orphan_maker COUNT MARKER
 *
 * Each round forks a child that forks a grandchild and exits at once; the maker reaps
 * the child, so the grandchild (which exits at once too) is an orphan: re-parented to
 * the nearest child subreaper or to PID 1, whose job it is to reap it. Every process
 * here is named "orphanmaker" (PR_SET_NAME) so the benchmark can tell them apart.
 * MARKER.start gets the maker's pid; MARKER.end gets CLOCK_MONOTONIC at its end (written
 * to MARKER.end.tmp, then renamed, so a reader never sees half of it).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void put(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return;
    if (write(fd, text, strlen(text)) < 0) { /* nothing to do */ }
    close(fd);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: orphan_maker COUNT MARKER\n");
        return 2;
    }
    long count = atol(argv[1]);
    char path[4096], tmp[4096], text[64];
    struct timespec ts;
    prctl(PR_SET_NAME, "orphanmaker", 0, 0, 0);
    clock_gettime(CLOCK_MONOTONIC, &ts);
    snprintf(path, sizeof path, "%s.start", argv[2]);
    snprintf(text, sizeof text, "%d %ld.%09ld\n", (int)getpid(), (long)ts.tv_sec, ts.tv_nsec);
    put(path, text);
    for (long i = 0; i < count; i++) {
        pid_t child = fork();
        if (child < 0) { /* out of processes for a moment: let the reaper catch up */
            usleep(1000);
            i--;
            continue;
        }
        if (child == 0) {
            (void)fork(); /* the grandchild and the child both leave at once */
            _exit(0);
        }
        while (waitpid(child, NULL, 0) < 0) { }
    }
    clock_gettime(CLOCK_MONOTONIC, &ts);
    snprintf(tmp, sizeof tmp, "%s.end.tmp", argv[2]);
    snprintf(path, sizeof path, "%s.end", argv[2]);
    snprintf(text, sizeof text, "%ld.%09ld\n", (long)ts.tv_sec, ts.tv_nsec);
    put(tmp, text);
    rename(tmp, path);
    return 0;
}
