from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from annotation.selectors import project_list_for_user


@login_required
def home(request):
    return render(request, "frontend/home.html", {"projects": project_list_for_user(user=request.user)})
