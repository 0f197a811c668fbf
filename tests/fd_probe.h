/*
 * Finite-difference probing of a whole model's gradient, shared by the model-level gradient tests.
 * Float32 forwards carry ~1e-6 of rounding noise in the loss, so each parameter tensor is probed
 * where the signal is large: along its own gradient direction (the derivative there is |g| when g is
 * right) and at its `n_top` largest-gradient coordinates. Failures are CHECKs naming the tensor.
 */
#ifndef QSTAR_TEST_FD_PROBE_H
#define QSTAR_TEST_FD_PROBE_H

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"
#include "model/model.h"
#include "tests/check.h"

typedef double (*ParamLoss)(const float* params);  // the loss at these (host) parameters

typedef struct {
    double step;        // central-difference step
    double tol_dir;     // relative tolerance along the gradient direction
    double tol_el;      // relative tolerance at single coordinates
    int n_top;          // largest coordinates probed per tensor (at most 8)
    double (*step_scale)(const ParamTensor* t);  // optional per-tensor factor on the step
} FdProbe;

static void fd_probe_model(const Model* m, const float* theta, const float* grad, ParamLoss loss, const FdProbe* p) {
    float* probe = xmalloc(sizeof(float) * m->n_params);
    double worst_dir = 0, worst_el = 0;
    for (int ti = 0; ti < m->n_tensors; ti++) {
        const ParamTensor* t = &m->tensors[ti];
        const float* g = grad + t->offset;
        const double h = p->step * (p->step_scale ? p->step_scale(t) : 1.0);
        double gn = 0;
        for (size_t i = 0; i < t->numel; i++) gn += (double)g[i] * g[i];
        gn = sqrt(gn);
        CHECK(gn > 0, "%s has no gradient", t->name);
        if (gn == 0) continue;
        memcpy(probe, theta, sizeof(float) * m->n_params);
        for (size_t i = 0; i < t->numel; i++) probe[t->offset + i] = theta[t->offset + i] + (float)(h * g[i] / gn);
        double lp = loss(probe);
        for (size_t i = 0; i < t->numel; i++) probe[t->offset + i] = theta[t->offset + i] - (float)(h * g[i] / gn);
        double lm = loss(probe);
        double fd = (lp - lm) / (2 * h), rel = fabs(fd - gn) / gn;
        worst_dir = fmax(worst_dir, rel);
        CHECK(rel < p->tol_dir, "%s: |g| %.6g but the finite difference along g is %.6g (rel %.3g)", t->name, gn, fd,
              rel);
        size_t top[8];
        int n_top = p->n_top < 8 ? p->n_top : 8, found = 0;
        for (int k = 0; k < n_top; k++) {  // the k-th largest |g| not yet taken
            size_t best = 0;
            int have = 0;
            for (size_t i = 0; i < t->numel; i++) {
                int taken = 0;
                for (int j = 0; j < found; j++) taken |= top[j] == i;
                if (!taken && (!have || fabsf(g[i]) > fabsf(g[best]))) best = i, have = 1;
            }
            if (have) top[found++] = best;
        }
        memcpy(probe, theta, sizeof(float) * m->n_params);
        for (int k = 0; k < found; k++) {
            size_t i = t->offset + top[k];
            probe[i] = theta[i] + (float)h;
            double a = loss(probe);
            probe[i] = theta[i] - (float)h;
            double b = loss(probe);
            probe[i] = theta[i];
            double fde = (a - b) / (2 * h), rele = fabs(fde - grad[i]) / fmax(fabs(grad[i]), 1e-4);
            worst_el = fmax(worst_el, rele);
            CHECK(rele < p->tol_el, "%s[%zu]: analytic %.6g, finite difference %.6g (rel %.3g)", t->name, top[k],
                  grad[i], fde, rele);
        }
    }
    printf("worst relative error: %.3g along gradient directions, %.3g at the largest coordinates (%d tensors)\n",
           worst_dir, worst_el, m->n_tensors);
    free(probe);
}

#endif
