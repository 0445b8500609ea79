/* A minimal timing loop for one generated network, for profiles (perf record)
 * and quick checks; the side-by-side figures come from bench/bench.py.
 *
 *   resnet-compile -o gen                      # or a model file
 *   cc -std=gnu11 -O3 -march=native -fopenmp -g -Igen -DNET=resnet20 -DUNET=RESNET20 \
 *      '-DNET_HEADER="resnet20.h"' bench/time_model.c gen/resnet20.c -o time -lm
 *   OMP_NUM_THREADS=2 ./time 64        # inference at batch 64
 *   perf record ./time 64 t            # a profile of training steps at batch 64
 *
 * Prints the best of five 0.5 s runs, in ms per call and images/s, and the
 * process CPU time per call: at OMP_NUM_THREADS=1 on a busy machine that is
 * the figure to compare (wall time counts the other processes too).
 */
#include NET_HEADER
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#define CAT2(a,b) a##b
#define CAT(a,b) CAT2(a,b)
#define F(x) CAT(NET, x)
#define U(x) CAT(UNET, x)
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static double cpu(void){struct timespec t;clock_gettime(CLOCK_PROCESS_CPUTIME_ID,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int argc,char**argv){
  int n=argc>1?atoi(argv[1]):1; int train=argc>2&&argv[2][0]=='t';
  F(_model)*m=F(_create)(n);
  size_t in=(size_t)n*U(_INPUT_C)*U(_INPUT_H)*U(_INPUT_W);
  float*x=malloc(in*4),*p=malloc((size_t)n*U(_NUM_CLASSES)*4); int32_t*lab=malloc(n*4);
  for(size_t i=0;i<in;i++)x[i]=(float)((i*7919)%1000)/1000.0f-0.5f;
  for(int i=0;i<n;i++)lab[i]=i%U(_NUM_CLASSES);
  float loss;
  for(int w=0;w<3;w++){ if(train) F(_train_step)(m,x,lab,n,0.01f,&loss); else F(_infer)(m,x,n,p);}
  double best=1e9,bestc=1e9;
  for(int r=0;r<5;r++){double t0=now(),c0=cpu();int it=0;while(now()-t0<0.5){ if(train) F(_train_step)(m,x,lab,n,0.01f,&loss); else F(_infer)(m,x,n,p); it++;} double t=(now()-t0)/it,c=(cpu()-c0)/it; if(t<best)best=t; if(c<bestc)bestc=c;}
  printf("batch %d %s: %.3f ms/call, %.0f img/s; cpu %.3f ms/call\n",n,train?"train":"infer",best*1e3,n/best,bestc*1e3);
  return 0;}
