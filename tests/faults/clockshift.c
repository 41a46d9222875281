/* LD_PRELOAD shim for the clock-jump case: shifts CLOCK_REALTIME (and time(),
 * gettimeofday()) by the number of seconds in $CLOCKSHIFT_FILE, re-read at most
 * every 50 ms. CLOCK_MONOTONIC and sleeps are untouched, as in a real clock
 * step (libfaketime 0.9.10 breaks Python's time.sleep with EINVAL once the
 * offset is negative and the monotonic clock is left alone). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

typedef int (*cg_fn)(clockid_t, struct timespec *);
static cg_fn real_cg;
static long long offset_s;
static long long last_ns = -1;

static void init(void) {
    if (!real_cg) real_cg = (cg_fn)dlsym(RTLD_NEXT, "clock_gettime");
}

static long long shift(void) {
    struct timespec now;
    init();
    real_cg(CLOCK_MONOTONIC, &now);
    long long ns = now.tv_sec * 1000000000LL + now.tv_nsec;
    if (last_ns < 0 || ns - last_ns > 50000000LL) {
        const char *f = getenv("CLOCKSHIFT_FILE");
        FILE *fp = f ? fopen(f, "r") : NULL;
        if (fp) {
            long long v;
            if (fscanf(fp, "%lld", &v) == 1) offset_s = v;
            fclose(fp);
        }
        last_ns = ns;
    }
    return offset_s;
}

int clock_gettime(clockid_t c, struct timespec *ts) {
    init();
    int r = real_cg(c, ts);
    if (r == 0 && (c == CLOCK_REALTIME || c == CLOCK_REALTIME_COARSE)) ts->tv_sec += shift();
    return r;
}

int gettimeofday(struct timeval *tv, void *tz) {
    struct timespec ts;
    (void)tz;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (tv) {
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000;
    }
    return 0;
}

time_t time(time_t *t) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (t) *t = ts.tv_sec;
    return ts.tv_sec;
}
