/* JUnit XML from the conformance results: what CI systems (Jenkins, GitLab, GitHub
 * test reporters) read.  One <testsuite> per suite, one <testcase> per test; FAIL is
 * a <failure>, CRASH and TIMEOUT are <error>s (the test did not get to an answer),
 * NOT_SUPPORTED and WAIVED are <skipped> with their reason. */
#include "kvfp8/conform.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static void xml_text(FILE *f, const char *s) {
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        switch (*p) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&apos;", f); break;
        default:
            /* XML 1.0 has no place for other control characters, even escaped */
            if (*p < 0x20 && *p != '\n' && *p != '\t' && *p != '\r')
                fputc('?', f);
            else
                fputc(*p, f);
        }
    }
}

static const char *str(json_t *o, const char *key) {
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static void lines(FILE *f, json_t *array) {
    size_t i;
    json_t *v;
    json_array_foreach(array, i, v) {
        xml_text(f, json_string_value(v));
        fputc('\n', f);
    }
}

typedef struct {
    int tests, failures, errors, skipped;
    double time;
} counts;

static void count(json_t *rec, counts *c) {
    const char *r = str(rec, "result");
    c->tests++;
    c->time += json_number_value(json_object_get(rec, "seconds"));
    if (!strcmp(r, "FAIL"))
        c->failures++;
    else if (!strcmp(r, "CRASH") || !strcmp(r, "TIMEOUT"))
        c->errors++;
    else if (!strcmp(r, "NOT_SUPPORTED") || !strcmp(r, "WAIVED"))
        c->skipped++;
}

static void testcase(FILE *f, json_t *rec) {
    const char *r = str(rec, "result");
    fprintf(f, "    <testcase classname=\"kvfp8.");
    xml_text(f, str(rec, "suite"));
    fputs("\" name=\"", f);
    xml_text(f, str(rec, "test"));
    fprintf(f, "\" time=\"%.3f\">\n", json_number_value(json_object_get(rec, "seconds")));
    const char *reason = str(rec, "reason");
    if (!strcmp(r, "FAIL") || !strcmp(r, "CRASH") || !strcmp(r, "TIMEOUT")) {
        const char *tag = !strcmp(r, "FAIL") ? "failure" : "error";
        fprintf(f, "      <%s type=\"%s\" message=\"", tag, r);
        xml_text(f, reason);
        fputs("\">", f);
        lines(f, json_object_get(rec, "failures"));
        if (strcmp(r, "FAIL")) {
            fputs("--- output (tail) ---\n", f);
            xml_text(f, str(rec, "output"));
        }
        fprintf(f, "</%s>\n", tag);
    } else if (!strcmp(r, "NOT_SUPPORTED") || !strcmp(r, "WAIVED")) {
        fputs("      <skipped message=\"", f);
        xml_text(f, r);
        fputs(": ", f);
        xml_text(f, !strcmp(r, "WAIVED") ? str(rec, "waiver") : reason);
        fputs("\"/>\n", f);
    }
    json_t *detail = json_object_get(rec, "detail");
    if (json_array_size(detail)) {
        fputs("      <system-out>", f);
        lines(f, detail);
        fputs("</system-out>\n", f);
    }
    fputs("    </testcase>\n", f);
}

kvfp8_status kvfp8_conform_write_junit(const char *path, json_t *header, json_t *records) {
    FILE *f = fopen(path, "w");
    if (!f)
        return kvfp8_fail(KVFP8_ERR_IO, "%s: %s", path, strerror(errno));
    counts all = {0};
    size_t i, j;
    json_t *rec, *other;
    json_array_foreach(records, i, rec) count(rec, &all);
    fputs("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"kvfp8 conform ", f);
    xml_text(f, str(header, "backend"));
    fprintf(f, "\" tests=\"%d\" failures=\"%d\" errors=\"%d\" skipped=\"%d\" time=\"%.3f\">\n", all.tests,
            all.failures, all.errors, all.skipped, all.time);
    /* suites in order of first appearance */
    json_array_foreach(records, i, rec) {
        const char *suite = str(rec, "suite");
        int first = 1;
        for (j = 0; j < i && first; j++)
            first = strcmp(str(json_array_get(records, j), "suite"), suite) != 0;
        if (!first)
            continue;
        counts c = {0};
        json_array_foreach(records, j, other) if (!strcmp(str(other, "suite"), suite)) count(other, &c);
        fputs("  <testsuite name=\"", f);
        xml_text(f, suite);
        fprintf(f, "\" tests=\"%d\" failures=\"%d\" errors=\"%d\" skipped=\"%d\" time=\"%.3f\">\n", c.tests,
                c.failures, c.errors, c.skipped, c.time);
        fputs("    <properties>\n", f);
        static const char *const props[] = {"backend", "backend_name", "list", "selection"};
        for (size_t p = 0; p < sizeof props / sizeof props[0]; p++) {
            fprintf(f, "      <property name=\"%s\" value=\"", props[p]);
            xml_text(f, str(header, props[p]));
            fputs("\"/>\n", f);
        }
        fputs("    </properties>\n", f);
        json_array_foreach(records, j, other) if (!strcmp(str(other, "suite"), suite)) testcase(f, other);
        fputs("  </testsuite>\n", f);
    }
    fputs("</testsuites>\n", f);
    if (fclose(f) != 0)
        return kvfp8_fail(KVFP8_ERR_IO, "%s: %s", path, strerror(errno));
    return KVFP8_OK;
}
