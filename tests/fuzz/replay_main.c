/*
 * Corpus replay driver for the fuzz targets.
 *
 * libFuzzer needs clang; this driver lets gcc builds (and `make test` on any
 * machine) feed every file of a corpus to LLVMFuzzerTestOneInput once, so a
 * crash found by fuzzing stays fixed. Arguments are files or directories.
 * Exit status: 0 when every input ran, 1 on a read error. A crash in the
 * target aborts the process, which the test runner reports as a failure.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path, unsigned *count)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	long len;
	int ret = -1;

	if (!f) {
		perror(path);
		return -1;
	}
	if (fseek(f, 0, SEEK_END) == -1 || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) == -1)
		goto out_close;
	/* Exact-size copy so ASan catches a read one byte past the input. */
	buf = malloc(len ? (size_t)len : 1);
	if (!buf || fread(buf, 1, (size_t)len, f) != (size_t)len)
		goto out_free;
	LLVMFuzzerTestOneInput(buf, (size_t)len);
	(*count)++;
	ret = 0;
out_free:
	free(buf);
out_close:
	fclose(f);
	return ret;
}

static int replay_path(const char *path, unsigned *count)
{
	struct stat st;
	struct dirent *de;
	DIR *dir;
	int ret = 0;

	if (stat(path, &st) == -1) {
		perror(path);
		return -1;
	}
	if (!S_ISDIR(st.st_mode))
		return replay_file(path, count);
	dir = opendir(path);
	if (!dir) {
		perror(path);
		return -1;
	}
	while ((de = readdir(dir))) {
		char sub[4096];

		if (de->d_name[0] == '.')
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
		if (replay_path(sub, count) == -1)
			ret = -1;
	}
	closedir(dir);
	return ret;
}

int main(int argc, char **argv)
{
	unsigned count = 0;
	int ret = 0;

	for (int i = 1; i < argc; i++)
		if (replay_path(argv[i], &count) == -1)
			ret = 1;
	printf("replayed %u inputs\n", count);
	return ret;
}
