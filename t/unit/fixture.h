
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * The shared TSB fixtures for the C unit tests: $TSB_FIXTURES, or
 * ../shared/fixtures from where the tests run (the Makefile sets it).
 */


#ifndef _TSB_FIXTURE_H_INCLUDED_
#define _TSB_FIXTURE_H_INCLUDED_


#include <stdio.h>
#include <stdlib.h>


static const char *
fixture_dir(void)
{
    const char  *d;

    d = getenv("TSB_FIXTURES");

    return d ? d : "../shared/fixtures";
}


static unsigned char *
read_fixture(const char *name, size_t *len)
{
    FILE           *f;
    long            n;
    char            path[1024];
    unsigned char  *buf;

    snprintf(path, sizeof(path), "%s/%s", fixture_dir(), name);

    f = fopen(path, "rb");
    if (f == NULL) {
        printf("# cannot open %s\n", path);
        return NULL;
    }

    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);

    buf = malloc(n + 1);
    if (buf == NULL || fread(buf, 1, n, f) != (size_t) n) {
        free(buf);
        fclose(f);
        return NULL;
    }

    buf[n] = '\0';
    *len = n;
    fclose(f);

    return buf;
}


#endif /* _TSB_FIXTURE_H_INCLUDED_ */
