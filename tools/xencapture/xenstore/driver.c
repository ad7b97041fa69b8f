/*
 * xsdriver: drives Debian's libxenstore through a fixed sequence of calls
 * against the xenstored socket named by XENSTORED_PATH, and checks what
 * the daemon answered.
 *
 * Protocol with the capture tool (stdout/stdin, one line each):
 *   driver: "OP <name>\t<C call>"   then waits for a line on stdin
 *           (unless XSDRIVER_NOSYNC is set), makes the call, then prints
 *   driver: "RESULT <text>"
 *   ...
 *   driver: "DONE"
 * The handshake lets the capture tool split the daemon's message trace
 * into one fixture per call. Exit status 0 means every answer was the one
 * a real xenstored gives for this sequence on a fresh store.
 *
 * Build: gcc -O1 -Wall -o xsdriver driver.c -lxenstore
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xenstore.h>

static int nosync;
static int failures;

static void op(const char *name, const char *call)
{
	char line[64];

	printf("OP %s\t%s\n", name, call);
	fflush(stdout);
	if (!nosync && !fgets(line, sizeof(line), stdin)) {
		fprintf(stderr, "xsdriver: capture tool went away\n");
		exit(2);
	}
}

static void result(const char *fmt, const char *a)
{
	printf("RESULT ");
	printf(fmt, a);
	printf("\n");
	fflush(stdout);
}

static void check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "xsdriver: FAIL %s (errno %d %s)\n", what, errno,
			strerror(errno));
		failures++;
	}
}

static void check_bool(const char *name, bool ok, int want_errno)
{
	if (ok) {
		result("%s", "true");
		check(want_errno == 0, name);
	} else {
		int e = errno;
		char buf[32];
		snprintf(buf, sizeof(buf), "false errno=%d", e);
		result("%s", buf);
		check(want_errno != 0 && e == want_errno, name);
	}
}

static void check_read(const char *name, char *v, unsigned int len,
		       const char *want, unsigned int wantlen, int want_errno)
{
	if (v) {
		char buf[128];
		unsigned int i, n = 0;
		for (i = 0; i < len && n + 5 < sizeof(buf); i++)
			n += snprintf(buf + n, sizeof(buf) - n,
				      (v[i] >= 32 && v[i] < 127) ? "%c" : "\\x%02x",
				      (unsigned char)v[i]);
		buf[n] = 0;
		result("\"%s\"", buf);
		check(want && len == wantlen && !memcmp(v, want, len), name);
		free(v);
	} else {
		char buf[32];
		snprintf(buf, sizeof(buf), "NULL errno=%d", errno);
		result("%s", buf);
		check(!want && errno == want_errno, name);
	}
}

static void check_list(const char *name, char **l, unsigned int num,
		       const char *want)
{
	char buf[256] = "";
	unsigned int i;

	if (!l) {
		snprintf(buf, sizeof(buf), "NULL errno=%d", errno);
		result("%s", buf);
		check(want == NULL, name);
		return;
	}
	for (i = 0; i < num; i++) {
		if (i)
			strncat(buf, " ", sizeof(buf) - strlen(buf) - 1);
		strncat(buf, l[i], sizeof(buf) - strlen(buf) - 1);
	}
	result("[%s]", buf);
	check(want && !strcmp(buf, want), name);
	free(l);
}

static void check_perms(const char *name, struct xs_permissions *p,
			unsigned int num, const char *want)
{
	char buf[256] = "";
	unsigned int i;
	static const char letters[] = "nrwb";

	if (!p) {
		snprintf(buf, sizeof(buf), "NULL errno=%d", errno);
		result("%s", buf);
		check(want == NULL, name);
		return;
	}
	for (i = 0; i < num; i++) {
		char one[24];
		snprintf(one, sizeof(one), "%s%c%u", i ? " " : "",
			 letters[p[i].perms & 3], p[i].id);
		strncat(buf, one, sizeof(buf) - strlen(buf) - 1);
	}
	result("[%s]", buf);
	check(want && !strcmp(buf, want), name);
	free(p);
}

static void check_watch(const char *name, struct xs_handle *h,
			const char *want_path, const char *want_token)
{
	unsigned int num;
	char **ev = xs_read_watch(h, &num);
	char buf[256];

	if (!ev) {
		snprintf(buf, sizeof(buf), "NULL errno=%d", errno);
		result("%s", buf);
		check(0, name);
		return;
	}
	snprintf(buf, sizeof(buf), "[%s %s]", ev[XS_WATCH_PATH],
		 ev[XS_WATCH_TOKEN]);
	result("%s", buf);
	check(num >= 2 && !strcmp(ev[XS_WATCH_PATH], want_path) &&
	      !strcmp(ev[XS_WATCH_TOKEN], want_token), name);
	free(ev);
}

#define DM "/local/domain/0/device-model/7"
#define BIG_CHILDREN 24

int main(void)
{
	struct xs_handle *h;
	unsigned int len, num = 0;
	char *v;
	xs_transaction_t t;
	char buf[64];
	char **l;
	struct xs_permissions *p;

	nosync = getenv("XSDRIVER_NOSYNC") != NULL;
	h = xs_open(0);
	if (!h) {
		perror("xs_open");
		return 2;
	}

	op("read_missing", "xs_read(h, XBT_NULL, \"" DM "/state\", &len)");
	v = xs_read(h, XBT_NULL, DM "/state", &len);
	check_read("read_missing", v, len, NULL, 0, ENOENT);

	op("write", "xs_write(h, XBT_NULL, \"" DM "/state\", \"running\", 7)");
	check_bool("write", xs_write(h, XBT_NULL, DM "/state", "running", 7), 0);

	op("read", "xs_read(h, XBT_NULL, \"" DM "/state\", &len)");
	v = xs_read(h, XBT_NULL, DM "/state", &len);
	check_read("read", v, len, "running", 7, 0);

	op("read_relative", "xs_read(h, XBT_NULL, \"device-model/7/state\", &len)");
	v = xs_read(h, XBT_NULL, "device-model/7/state", &len);
	check_read("read_relative", v, len, "running", 7, 0);

	op("write_binary", "xs_write(h, XBT_NULL, \"" DM "/blob\", \"a\\0b\", 3)");
	check_bool("write_binary", xs_write(h, XBT_NULL, DM "/blob", "a\0b", 3), 0);

	op("read_binary", "xs_read(h, XBT_NULL, \"" DM "/blob\", &len)");
	v = xs_read(h, XBT_NULL, DM "/blob", &len);
	check_read("read_binary", v, len, "a\0b", 3, 0);

	op("write_empty", "xs_write(h, XBT_NULL, \"" DM "/empty\", \"\", 0)");
	check_bool("write_empty", xs_write(h, XBT_NULL, DM "/empty", "", 0), 0);

	op("mkdir", "xs_mkdir(h, XBT_NULL, \"" DM "/backends/qdisk\")");
	check_bool("mkdir", xs_mkdir(h, XBT_NULL, DM "/backends/qdisk"), 0);

	op("mkdir_existing", "xs_mkdir(h, XBT_NULL, \"" DM "/backends\")");
	check_bool("mkdir_existing", xs_mkdir(h, XBT_NULL, DM "/backends"), 0);

	op("directory", "xs_directory(h, XBT_NULL, \"" DM "\", &num)");
	l = xs_directory(h, XBT_NULL, DM, &num);
	check_list("directory", l, num, "backends blob empty state");

	op("directory_empty", "xs_directory(h, XBT_NULL, \"" DM "/backends/qdisk\", &num)");
	l = xs_directory(h, XBT_NULL, DM "/backends/qdisk", &num);
	check_list("directory_empty", l, num, "");

	op("directory_missing", "xs_directory(h, XBT_NULL, \"/nonexistent\", &num)");
	l = xs_directory(h, XBT_NULL, "/nonexistent", &num);
	check_list("directory_missing", l, num, NULL);

	/* A directory too big for one XS_DIRECTORY reply: libxenstore gets
	 * E2BIG and falls back to XS_DIRECTORY_PART. */
	op("make_big_directory", "for i in 0..23: xs_mkdir(h, XBT_NULL, "
	   "\"/local/domain/0/big/\" + 198 x 'a' + \"%02d\" % i)");
	{
		char name[256], longname[199];
		int i, made = 0;
		memset(longname, 'a', 198);
		longname[198] = 0;
		for (i = 0; i < BIG_CHILDREN; i++) {
			snprintf(name, sizeof(name), "/local/domain/0/big/%s%02d", longname, i);
			if (xs_mkdir(h, XBT_NULL, name))
				made++;
		}
		snprintf(buf, sizeof(buf), "%d created", made);
		result("%s", buf);
		check(made == BIG_CHILDREN, "make_big_directory");
	}

	op("directory_part", "xs_directory(h, XBT_NULL, \"/local/domain/0/big\", &num)");
	l = xs_directory(h, XBT_NULL, "/local/domain/0/big", &num);
	if (!l) {
		snprintf(buf, sizeof(buf), "NULL errno=%d", errno);
		result("%s", buf);
		check(0, "directory_part");
	} else {
		unsigned int i, good = 0;
		for (i = 0; i < num; i++) {
			char want[256];
			memset(want, 'a', 198);
			snprintf(want + 198, sizeof(want) - 198, "%02u", i);
			if (!strcmp(l[i], want))
				good++;
		}
		snprintf(buf, sizeof(buf), "%u names, %u as expected", num, good);
		result("%s", buf);
		check(num == BIG_CHILDREN && good == num, "directory_part");
		free(l);
	}

	op("get_perms", "xs_get_permissions(h, XBT_NULL, \"" DM "/state\", &num)");
	p = xs_get_permissions(h, XBT_NULL, DM "/state", &num);
	check_perms("get_perms", p, num, "n0");

	{
		struct xs_permissions acl[4] = {
			{ .id = 0, .perms = XS_PERM_NONE },
			{ .id = 7, .perms = XS_PERM_READ },
			{ .id = 3, .perms = XS_PERM_READ | XS_PERM_WRITE },
			{ .id = 5, .perms = XS_PERM_WRITE },
		};
		op("set_perms", "xs_set_permissions(h, XBT_NULL, \"" DM "/state\", "
		   "{{0,NONE},{7,READ},{3,READ|WRITE},{5,WRITE}}, 4)");
		check_bool("set_perms",
			   xs_set_permissions(h, XBT_NULL, DM "/state", acl, 4), 0);
	}

	op("get_perms_acl", "xs_get_permissions(h, XBT_NULL, \"" DM "/state\", &num)");
	p = xs_get_permissions(h, XBT_NULL, DM "/state", &num);
	check_perms("get_perms_acl", p, num, "n0 r7 b3 w5");

	op("watch", "xs_watch(h, \"" DM "\", \"dmtoken\") + xs_read_watch");
	check_bool("watch", xs_watch(h, DM, "dmtoken"), 0);
	check_watch("watch_initial", h, DM, "dmtoken");

	op("watch_fire", "xs_write(h, XBT_NULL, \"" DM "/state\", \"paused\", 6) + xs_read_watch");
	check_bool("watch_fire", xs_write(h, XBT_NULL, DM "/state", "paused", 6), 0);
	check_watch("watch_fire_event", h, DM "/state", "dmtoken");

	op("unwatch", "xs_unwatch(h, \"" DM "\", \"dmtoken\")");
	check_bool("unwatch", xs_unwatch(h, DM, "dmtoken"), 0);

	op("unwatch_missing", "xs_unwatch(h, \"" DM "\", \"dmtoken\")");
	check_bool("unwatch_missing", xs_unwatch(h, DM, "dmtoken"), ENOENT);

	op("watch_special", "xs_watch(h, \"@releaseDomain\", \"rel\") + xs_read_watch");
	check_bool("watch_special", xs_watch(h, "@releaseDomain", "rel"), 0);
	check_watch("watch_special_initial", h, "@releaseDomain", "rel");

	op("unwatch_special", "xs_unwatch(h, \"@releaseDomain\", \"rel\")");
	check_bool("unwatch_special", xs_unwatch(h, "@releaseDomain", "rel"), 0);

	op("transaction_start", "xs_transaction_start(h)");
	t = xs_transaction_start(h);
	snprintf(buf, sizeof(buf), "%u", t);
	result("%s", buf);
	check(t == 1, "transaction_start");

	op("tx_write", "xs_write(h, 1, \"" DM "/tx\", \"1\", 1)");
	check_bool("tx_write", xs_write(h, t, DM "/tx", "1", 1), 0);

	op("tx_read", "xs_read(h, 1, \"" DM "/tx\", &len)");
	v = xs_read(h, t, DM "/tx", &len);
	check_read("tx_read", v, len, "1", 1, 0);

	op("transaction_end", "xs_transaction_end(h, 1, false)");
	check_bool("transaction_end", xs_transaction_end(h, t, false), 0);

	op("transaction_start_abort", "xs_transaction_start(h)");
	t = xs_transaction_start(h);
	snprintf(buf, sizeof(buf), "%u", t);
	result("%s", buf);
	check(t == 2, "transaction_start_abort");

	op("transaction_abort", "xs_transaction_end(h, 2, true)");
	check_bool("transaction_abort", xs_transaction_end(h, t, true), 0);

	op("transaction_end_missing", "xs_transaction_end(h, 2, false)");
	check_bool("transaction_end_missing", xs_transaction_end(h, 2, false), ENOENT);

	/* A conflict: the transaction reads a node, another write changes
	 * it, the commit must fail with EAGAIN. */
	op("conflict_start", "xs_transaction_start(h)");
	t = xs_transaction_start(h);
	snprintf(buf, sizeof(buf), "%u", t);
	result("%s", buf);
	check(t == 3, "conflict_start");

	op("conflict_tx_read", "xs_read(h, 3, \"" DM "/state\", &len)");
	v = xs_read(h, t, DM "/state", &len);
	check_read("conflict_tx_read", v, len, "paused", 6, 0);

	op("conflict_write", "xs_write(h, XBT_NULL, \"" DM "/state\", \"running\", 7)");
	check_bool("conflict_write", xs_write(h, XBT_NULL, DM "/state", "running", 7), 0);

	op("conflict_tx_write", "xs_write(h, 3, \"" DM "/state\", \"stale\", 5)");
	check_bool("conflict_tx_write", xs_write(h, t, DM "/state", "stale", 5), 0);

	op("conflict_end", "xs_transaction_end(h, 3, false)");
	check_bool("conflict_end", xs_transaction_end(h, t, false), EAGAIN);

	op("read_after_conflict", "xs_read(h, XBT_NULL, \"" DM "/state\", &len)");
	v = xs_read(h, XBT_NULL, DM "/state", &len);
	check_read("read_after_conflict", v, len, "running", 7, 0);

	op("get_domain_path", "xs_get_domain_path(h, 7)");
	v = xs_get_domain_path(h, 7);
	check_read("get_domain_path", v, v ? strlen(v) : 0, "/local/domain/7",
		   15, 0);

	op("is_domain_introduced", "xs_is_domain_introduced(h, 0)");
	check_bool("is_domain_introduced", xs_is_domain_introduced(h, 0), 0);

	op("write_invalid", "xs_write(h, XBT_NULL, \"/bad path\", \"x\", 1)");
	check_bool("write_invalid", xs_write(h, XBT_NULL, "/bad path", "x", 1), EINVAL);

	op("rm", "xs_rm(h, XBT_NULL, \"" DM "\")");
	check_bool("rm", xs_rm(h, XBT_NULL, DM), 0);

	op("rm_missing", "xs_rm(h, XBT_NULL, \"" DM "\")");
	check_bool("rm_missing", xs_rm(h, XBT_NULL, DM), 0);

	op("rm_missing_parent", "xs_rm(h, XBT_NULL, \"/nonexistent/child\")");
	check_bool("rm_missing_parent", xs_rm(h, XBT_NULL, "/nonexistent/child"), ENOENT);

	op("read_removed", "xs_read(h, XBT_NULL, \"" DM "/state\", &len)");
	v = xs_read(h, XBT_NULL, DM "/state", &len);
	check_read("read_removed", v, len, NULL, 0, ENOENT);

	xs_close(h);
	printf("DONE\n");
	fflush(stdout);
	if (failures) {
		fprintf(stderr, "xsdriver: %d check(s) failed\n", failures);
		return 1;
	}
	return 0;
}
