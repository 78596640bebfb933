// Prints run.c's encoding of each line of a text file (no BOS/EOS), then a tab and
// run.c's decode() of those ids after BOS. Build beside llama2.c's run.c; see README.md.
#define main orig_main
#include "run.c"
#undef main
int main(int argc, char** argv) {
    Tokenizer t; build_tokenizer(&t, argv[1], atoi(argv[2]));
    FILE* f = fopen(argv[3], "rb"); static char buf[1<<16]; size_t n = fread(buf,1,sizeof(buf)-1,f); buf[n]=0;
    char* line = buf;
    while (*line) {
        char* nl = strchr(line, '\n'); if (nl) *nl = 0;
        // unescape \n \t
        char text[4096]; int k=0; for (char* p=line; *p; p++) { if (*p=='\\' && p[1]=='n') {text[k++]='\n'; p++;} else if (*p=='\\' && p[1]=='t') {text[k++]='\t'; p++;} else text[k++]=*p; } text[k]=0;
        int toks[8192]; int nt=0; encode(&t, text, 0, 0, toks, &nt);
        printf("[");
        for (int i=0;i<nt;i++) printf(i?",%d":"%d", toks[i]);
        printf("]\t");
        int prev = 1;
        for (int i=0;i<nt;i++){ char* p = decode(&t, prev, toks[i]); 
            for (char* c=p; *c; c++) { if (*c=='\n') printf("\\n"); else if (*c=='\t') printf("\\t"); else if (*c=='\\') printf("\\\\"); else putchar(*c);} prev=toks[i]; }
        printf("\n");
        if (!nl) break; line = nl+1;
    }
    return 0;
}
