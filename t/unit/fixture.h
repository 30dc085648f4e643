
/*
 * Copyright (C) ngx_tsb_module authors
 *
 * The TSB fixtures for the C unit tests: t/fixtures/ of the checkout the
 * tests were built in (the Makefile passes its absolute path as
 * TSB_FIXTURES), so they read nothing outside the tree.
 */


#ifndef _TSB_FIXTURE_H_INCLUDED_
#define _TSB_FIXTURE_H_INCLUDED_


#include <stdio.h>
#include <stdlib.h>


#ifndef TSB_FIXTURES
#define TSB_FIXTURES  "t/fixtures"
#endif


static const char *
fixture_dir(void)
{
    return TSB_FIXTURES;
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
